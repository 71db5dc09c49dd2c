"""Session setup: a loopback stand-in of the Hugging Face Hub replaces huggingface.co for the whole test run.

huggingface_hub reads HF_ENDPOINT and HF_HUB_CACHE when it is imported, and timm imports it, so the hub starts here,
before any test module imports timm. Each pytest-xdist worker gets its own hub and caches.
"""
import pytest
from loopback_hub import start_session_hub

HUB = start_session_hub()


@pytest.fixture(scope='session')
def hub():
    return HUB
