"""The delivery engine: publishing to the broker, claiming and sending, retries, the sweep, the
mail connection, the emails and their headers, signed links and tokens.
"""
