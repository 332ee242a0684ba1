"""The reference zoo: specs that reproduce published networks exactly (package data)."""
