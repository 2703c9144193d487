"""Fixtures shared by the audio tests."""

import pytest

from tests.synthetic_audio import click_track


@pytest.fixture(scope="module")
def clicks():
    return click_track()
