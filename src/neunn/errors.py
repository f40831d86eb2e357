"""The one exception type whose message is shown to users as is, in one sentence, without a traceback."""


class NeunnError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""
