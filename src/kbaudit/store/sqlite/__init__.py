"""The store on SQLite: one file, one writer at a time, on one host."""
