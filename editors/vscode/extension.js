// The resdsl extension: starts `resdsl lsp` (stdio) for .res files. The server does the
// work (diagnostics, hover, definition, completion, symbols, formatting); the TextMate
// grammar in syntaxes/ colours the text.
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("resdsl").get("server.command", ["resdsl", "lsp"]);
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient("resdsl", "resdsl", server, {
    documentSelector: [{ scheme: "file", language: "resdsl" }, { scheme: "untitled", language: "resdsl" }],
  });
  client.start();
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
