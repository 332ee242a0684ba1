"""``resdsl lsp``: a Language Server Protocol server over stdio, built on pygls.

The protocol glue only: each open document is a :class:`~resdsl.editor.workspace.Document`
(analysed on open and on every change, its last parsed version kept for hover while
the text has errors), and each request converts positions between the protocol's
0-based UTF-16 units and resdsl's 1-based character columns.

Features: diagnostics (every problem of the :class:`~resdsl.SpecError`, with its range,
the hint and notes as related information), hover, go to definition, completion,
document symbols and formatting (``resdsl fmt``). Needs ``pip install 'resdsl[editor]'``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from .. import __version__
from ..errors import Diagnostic, LineIndex, Span, SpecError
from .fmt import format_text
from .workspace import Document, Located, Symbol

_COMPLETION_KINDS = {
    "op": lsp.CompletionItemKind.Function,
    "block": lsp.CompletionItemKind.Class,
    "keyword": lsp.CompletionItemKind.Keyword,
    "label": lsp.CompletionItemKind.Variable,
    "argument": lsp.CompletionItemKind.Property,
    "variable": lsp.CompletionItemKind.Variable,
}
_SYMBOL_KINDS = {"network": lsp.SymbolKind.Module, "block": lsp.SymbolKind.Class,
                 "stage": lsp.SymbolKind.Array}


class ResdslServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("resdsl", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Full)
        self.documents: dict[str, Document] = {}

    def document(self, uri: str) -> Document | None:
        return self.documents.get(uri)

    def analyse(self, uri: str, text: str) -> None:
        document = self.documents.get(uri)
        if document is None:
            path = uri_path(uri)
            filename = str(path) if path is not None else uri
            document = Document(filename, text, path.parent if path is not None else None)
            self.documents[uri] = document
        else:
            document.update(text)
        diagnostics = [to_lsp_diagnostic(d, document, uri) for d in document.diagnostics]
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))


server = ResdslServer()


def uri_path(uri: str) -> Path | None:
    """The file a ``file:`` URI names (None for an unsaved buffer)."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


# ---- positions ----------------------------------------------------------------------------
def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def to_position(index: LineIndex, line: int, column: int) -> lsp.Position:
    """1-based (line, character column) -> the protocol's 0-based UTF-16 position."""
    line = max(line, 1)
    source = index.line(line) or ""
    return lsp.Position(line=line - 1, character=_utf16(source[:max(column - 1, 0)]))


def from_position(index: LineIndex, position: lsp.Position) -> tuple[int, int]:
    """The protocol's position -> 1-based (line, column in characters)."""
    source = index.line(position.line + 1) or ""
    units = 0
    for count, char in enumerate(source):
        if units >= position.character:
            return position.line + 1, count + 1
        units += 2 if ord(char) > 0xFFFF else 1
    return position.line + 1, len(source) + 1


def to_range(index: LineIndex, span: Span) -> lsp.Range:
    if not span.located:
        return lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=1))
    end_line, end_column = (span.end_line, span.end_column) if span.end_line else (span.line, span.column + 1)
    return lsp.Range(start=to_position(index, span.line, span.column), end=to_position(index, end_line, end_column))


def to_lsp_diagnostic(diag: Diagnostic, document: Document, uri: str) -> lsp.Diagnostic:
    """A located problem; one in an imported file is shown at the file's start, naming it."""
    index = LineIndex(document.current.text)
    here = diag.span.file == document.filename
    message = diag.message if here else f"{diag.span.where()}: {diag.message}"
    related = [lsp.DiagnosticRelatedInformation(location=lsp.Location(uri=uri, range=to_range(index, diag.span)
                                                                      if here else to_range(index, Span())),
                                                message=f"{kind}: {text}")
               for kind, text in [*(("note", n) for n in diag.notes), *((("hint", diag.hint),) if diag.hint else ())]]
    return lsp.Diagnostic(range=to_range(index, diag.span if here else Span()), message=message,
                          severity=lsp.DiagnosticSeverity.Error, source="resdsl",
                          related_information=related or None)


def _location(located: Located, document: Document, uri: str) -> lsp.Location:
    if located.file == document.filename:
        return lsp.Location(uri=uri, range=to_range(LineIndex(document.current.text), located.span))
    try:
        text = Path(located.file).read_text(encoding="utf-8")[:1 << 20]
    except (OSError, UnicodeDecodeError):
        text = ""
    return lsp.Location(uri=Path(located.file).resolve().as_uri(), range=to_range(LineIndex(text), located.span))


# ---- features --------------------------------------------------------------------------------
@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: ResdslServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.analyse(params.text_document.uri, params.text_document.text)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: ResdslServer, params: lsp.DidChangeTextDocumentParams) -> None:
    if params.content_changes:  # full sync: the last change holds the whole text
        ls.analyse(params.text_document.uri, params.content_changes[-1].text)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: ResdslServer, params: lsp.DidCloseTextDocumentParams) -> None:
    ls.documents.pop(params.text_document.uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: ResdslServer, params: lsp.HoverParams) -> lsp.Hover | None:
    document = ls.document(params.text_document.uri)
    analysis = document and (document.checked or document.good)
    if analysis is None:
        return None
    line, column = from_position(LineIndex(analysis.text), params.position)
    text = document.hover(line, column)
    if text is None:
        return None
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def definition(ls: ResdslServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    document = ls.document(params.text_document.uri)
    if document is None or document.good is None:
        return None
    line, column = from_position(LineIndex(document.good.text), params.position)
    found = document.definition(line, column)
    return _location(found, document, params.text_document.uri) if found is not None else None


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=[" ", "(", ","]))
def completion(ls: ResdslServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    document = ls.document(params.text_document.uri)
    if document is None:
        return lsp.CompletionList(is_incomplete=False, items=[])
    line, column = from_position(LineIndex(document.current.text), params.position)
    items = [lsp.CompletionItem(label=label, kind=_COMPLETION_KINDS.get(kind), detail=detail)
             for label, kind, detail in document.completions(line, column)]
    return lsp.CompletionList(is_incomplete=False, items=items)


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbol(ls: ResdslServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    document = ls.document(params.text_document.uri)
    if document is None or document.good is None:
        return []
    index = LineIndex(document.good.text)
    return [_document_symbol(s, index) for s in document.symbols()]


def _document_symbol(symbol: Symbol, index: LineIndex) -> lsp.DocumentSymbol:
    whole = to_range(index, symbol.span)
    name = to_range(index, symbol.name_span)
    if (name.start.line, name.start.character) < (whole.start.line, whole.start.character) or \
            (name.end.line, name.end.character) > (whole.end.line, whole.end.character):
        name = whole  # the protocol wants the name inside the whole
    return lsp.DocumentSymbol(name=symbol.name, kind=_SYMBOL_KINDS[symbol.kind], detail=symbol.detail,
                              range=whole, selection_range=name,
                              children=[_document_symbol(c, index) for c in symbol.children])


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: ResdslServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
    document = ls.document(params.text_document.uri)
    if document is None:
        return None
    text = document.current.text
    try:
        formatted = format_text(text, document.filename)
    except SpecError:
        return None  # the diagnostics say why
    if formatted == text:
        return []
    index = LineIndex(text)
    end = to_position(index, len(index), len(index.line(len(index)) or "") + 1)
    return [lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=0, character=0), end=end), new_text=formatted)]


def serve() -> None:
    """Speak LSP on stdin/stdout until the client says exit."""
    server.start_io()
