"""tools/book.py loaded as a module (it is a script, not part of the package), shared by the tests."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("mcr2_book_tool", Path(__file__).resolve().parents[1] / "tools" / "book.py")
book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book)
