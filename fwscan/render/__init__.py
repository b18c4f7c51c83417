"""Report renderers: pure functions from a scan result, a build diff or a batch matrix to text.

Each renderer returns the whole document as a string; writing it to a file is the CLI's job.
"""
