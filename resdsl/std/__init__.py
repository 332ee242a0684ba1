"""The standard library of blocks: ``import "std/NAME"`` from any spec (package data)."""
