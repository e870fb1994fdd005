"""What the migrations need of kbaudit, copied as it was when they were written.

A migration must do the same thing forever, whatever the live code becomes: so none imports
kbaudit's own modules, only these copies, which never change once a migration uses them.
(tests/unit/test_layers.py holds the migrations to that; tests/integration/test_migrations.py
upgrades a database made at an old revision and checks the documents and leaves it ends with.)
"""
