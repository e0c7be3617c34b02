"""Settings: the schema every setting is declared in, and its validators. The bottom layer: it
imports nothing of the app.
"""
