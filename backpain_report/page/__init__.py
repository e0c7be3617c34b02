"""The article page and its form: the shared page cache, the cross-origin rules of the sign-up,
page views and sources, the offer block, SEO.
"""
