"""The reconciler: redrives dead letters, and compares the domains with each other and with the chain."""
