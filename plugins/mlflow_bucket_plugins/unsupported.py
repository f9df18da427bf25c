"""An answer for every store call MLflow declares and the bucket stores do not hold.

MLflow's abstract stores, and the mixins it adds release by release (the AI
gateway, MCP servers, skills, ...), raise a bare ``NotImplementedError``
for what a store lacks; the server turns that into an HTTP 500 and the UI
into a broken page. Here each such call gets either an empty answer (a
listing or search: there is nothing to list) or MLflow's own
``MlflowNotImplementedException`` (NOT_IMPLEMENTED, HTTP 501), which the UI
reports as an unsupported feature.

The set is computed from every class the store's MLflow base inherits, on
whatever MLflow is installed, so a call a new release adds is answered the
same way without a change here. Listings are recognised by their name (a
read verb) and their declared return type; the hand-written ``empty`` maps
of the stores cover the calls whose shape the annotations do not tell.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from mlflow.exceptions import MlflowNotImplementedException
from mlflow.store.entities.paged_list import PagedList

Answer = Callable[[], Any]

# A call named so reads; only these may answer "nothing" by their return type.
_READS = ("search_", "list_", "find_", "get_", "batch_get_", "query_")


def paged() -> PagedList[Any]:
    return PagedList([], None)


def _raises_not_implemented(func: Any) -> bool:
    """Whether a base method's body raises NotImplementedError (it has no real default)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def _implemented(cls: type, base: type, name: str) -> bool:
    """Whether ``cls`` itself (not MLflow's base) defines ``name``."""
    owner = next((c for c in cls.__mro__ if name in vars(c)), object)
    return owner is not object and owner not in base.__mro__


def missing_calls(base: type, cls: type) -> dict[str, Any]:
    """Base methods (any class of ``base``'s MRO) with no real default that ``cls`` lacks."""
    found: dict[str, Any] = {}
    for klass in base.__mro__:
        if klass is object:
            continue
        for name, func in vars(klass).items():
            if name.startswith("__") or name in found or not inspect.isfunction(func):
                continue
            if _implemented(cls, base, name):
                continue
            if _raises_not_implemented(func) or getattr(func, "__isabstractmethod__", False):
                found[name] = func
    return found


def _empty_by_type(name: str, func: Any) -> Answer | None:
    """An empty answer of the declared type, for a call that reads."""
    if not name.startswith(_READS):
        return None
    try:
        returns = inspect.signature(func).return_annotation
    except (TypeError, ValueError):
        return None
    text = returns if isinstance(returns, str) else getattr(returns, "__name__", str(returns))
    text = text.replace("typing.", "")
    if text.startswith("PagedList"):
        return paged
    if text.startswith(("list[", "List[", "list")):
        return list
    return None


def _empty(name: str, make: Answer) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return make()

    method.__name__ = name
    method.__doc__ = "Nothing to list: the bucket store does not hold these (docs/limits.md)."
    return method


def _not_supported(name: str, what: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise MlflowNotImplementedException(f"{name} is not supported by mlflow-bucket's {what}")

    method.__name__ = name
    method.__doc__ = "Not supported by the bucket store (docs/limits.md)."
    return method


def fill_unsupported(
    base: type, empty: dict[str, Answer], extra: Iterable[str], what: str
) -> Callable[[type], type]:
    """Class decorator: give the store an answer for every call of ``base`` it lacks.

    ``empty`` names calls answered with "nothing" whatever their annotation
    says; ``extra`` names calls the server makes that ``base`` does not
    declare with a NotImplementedError body; ``what`` names the store and what
    it holds, for the error message.
    """

    def fill(cls: type) -> type:
        calls = missing_calls(base, cls)
        for name in [*extra, *empty]:
            if name not in calls and not _implemented(cls, base, name):
                calls[name] = None
        for name, func in calls.items():
            make = empty.get(name) or (_empty_by_type(name, func) if func else None)
            setattr(cls, name, _empty(name, make) if make else _not_supported(name, what))
        cls.unsupported_calls = tuple(sorted(calls))  # type: ignore[attr-defined]
        return cls

    return fill
