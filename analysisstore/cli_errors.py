"""One place that turns a command's failure into one line for the user and an exit code.

The commands raise; ``cli.main`` catches once and asks :func:`explain_failure`
what to say. ``--debug`` skips this and shows the traceback instead.
"""
from __future__ import annotations

__all__ = ["explain_failure", "EXIT_FAILED", "EXIT_CONFIG", "EXIT_UNREACHABLE", "EXIT_AUTH"]

#: The command ran and failed, or the service refused a request.
EXIT_FAILED = 1
#: Bad flags or configuration (argparse uses 2 for usage errors too).
EXIT_CONFIG = 2
#: No service answered, or its database did not.
EXIT_UNREACHABLE = 3
#: The service wants a token, or a token with more scopes.
EXIT_AUTH = 4

_TOKEN_HINT = "make one with `analysisstore token create --scope read --scope write`"


def explain_failure(exc: BaseException, url: str | None) -> tuple[str, int]:
    """``(message, exit code)`` for a failure of a command that used the service at ``url`` (if any)."""
    from .client import errors as client_errors
    from .contract.bundle import BundleError
    from .config import ConfigError
    from .errors import AnalysisStoreError

    where = f"at {url}" if url else ""
    exit_code = getattr(exc, "exit_code", None)
    if isinstance(exit_code, int):  # cli.CommandFailed: its message is already the line to show
        return str(exc), exit_code
    if isinstance(exc, client_errors.ServiceUnreachable):
        return (f"no analysisstore service answers {where or 'there'}; start one with `analysisstore serve`, "
                "or point --url (or $ASST_URL) at a running one", EXIT_UNREACHABLE)
    if isinstance(exc, client_errors.Unauthorized):
        return (f"the service {where} needs a token ({exc.message}); pass --token or set $ASST_TOKEN "
                f"({_TOKEN_HINT})", EXIT_AUTH)
    if isinstance(exc, client_errors.Forbidden):
        return (f"the token may not do this ({exc.message}); use a token with the needed scope "
                f"({_TOKEN_HINT})", EXIT_AUTH)
    if isinstance(exc, client_errors.ServiceUnavailable):
        return f"the service {where} cannot reach its database ({exc.message}); retry later", EXIT_UNREACHABLE
    if isinstance(exc, client_errors.ServiceError):
        return f"the service {where} refused the request: {exc}", EXIT_FAILED
    if isinstance(exc, BundleError):
        return f"bad bundle: {exc}", EXIT_FAILED
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc}", EXIT_CONFIG
    if isinstance(exc, AnalysisStoreError):
        return exc.message, EXIT_FAILED
    if isinstance(exc, OSError):
        if exc.filename and exc.strerror:
            return f"{exc.filename}: {exc.strerror.lower()}", EXIT_FAILED
        return str(exc), EXIT_FAILED
    if isinstance(exc, LookupError) and exc.args:
        return str(exc.args[0]), EXIT_FAILED
    if type(exc).__name__ == "EmbeddedDatabaseError":  # not imported: it would load pymongo for every command
        return f"the embedded database did not start: {exc}", EXIT_FAILED
    return (f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback, and please "
            "report it)", EXIT_FAILED)
