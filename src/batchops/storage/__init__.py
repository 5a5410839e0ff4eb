"""Where a provider's data lives: its warehouse file and lock, backups, restore, rebuild, retention."""
