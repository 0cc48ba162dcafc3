"""SIP accounts: Account, BonjourAccount and the AccountManager."""
