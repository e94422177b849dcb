"""The load tester's version (its own module: it also works when ``loadtest`` is imported as a
namespace package, as an editable install made before ``loadtest/__init__.py`` existed does)."""

__version__ = "0.1.0"
