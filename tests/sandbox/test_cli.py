"""The command line: port 0 picks a free port, CLI options reach the server, bad options exit cleanly."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import PROJECT_ROOT
from tests.support.sandbox import running_sandbox


def test_cli_options_are_applied(tmp_path):
    with running_sandbox(folders=5, seed=2, api_key="other-key", error_rate=0.25, retry_after=3,
                         signature_algorithm="sha512", signature_encoding="base64", duplicate_rate=0.5,
                         siret="98765432100019") as sbx:
        assert sbx.url.startswith("http://127.0.0.1:") and not sbx.url.endswith(":0")
        faults = sbx.control("GET", "/faults")
        assert faults["error_rate"] == 0.25 and faults["retry_after"] == 3
        config = sbx.control("GET", "/deliveries/config")
        assert config["signature_algorithm"] == "sha512" and config["signature_encoding"] == "base64"
        assert config["duplicate_rate"] == 0.5
        assert len(sbx.control("GET", "/truth")) == 5
        sbx.control("PUT", "/faults", json={"error_rate": 0})
        assert sbx.api("GET", "/organisms/me").json()["siret"] == "98765432100019"


def test_bad_options_exit_with_a_message():
    for args in (["--folders", "-1"], ["--error-rate", "3"], ["--port", "http"], ["--retry-delays", "a,b"]):
        result = subprocess.run([sys.executable, "-m", "wedof_sandbox", "--port", "0", *args], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
