"""The one exception type for mistakes a user can fix.

`main` prints these as a single line and exits non-zero; everything else is a bug and keeps its
traceback.
"""


class UserError(ValueError):
  """Bad input: a config value, a path, a data file. The message names the fix."""
