"""The reader's rights and the address's protection: consent under double opt-in, suppression after
bounces and complaints, throttles, address and name rules, data export.
"""
