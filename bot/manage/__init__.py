"""Managing minted accounts: the list, the App Home, Delete, Projects… and Replace…."""
