import sipsimple
from sipsimple.core import SIPCoreError, SIPParseError


def test_version_is_a_release_string():
    assert sipsimple.__version__.count(".") == 2


def test_parse_errors_are_core_errors():
    assert issubclass(SIPParseError, SIPCoreError)
