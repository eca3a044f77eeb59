"""Where state lives: Table Storage helpers, the process's clients, Key Vault."""
