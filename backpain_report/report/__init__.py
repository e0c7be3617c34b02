"""The report pipeline: rendering the PDF, the cached body, joining the reader's cover, the private
storage of readers' PDFs, the cover picture. Makes bytes; never decides who gets them.
"""
