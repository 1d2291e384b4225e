"""The README's Authentication examples load as pasted: its keys block as the example config's tenant, and its
`[[auth.issuers]]` block appended to the example config; its Python example is valid Python."""

import re
from pathlib import Path

from shared.domain.config import load_config
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Authentication: keys and Entra ID tokens") :]
SECTION = SECTION[: SECTION.index("\n## ")]


def test_the_readme_credentials_examples_load_as_pasted(tmp_path: Path) -> None:
    keys, issuer = re.findall(r"```toml\n(.*?)```", SECTION, re.S)
    example = (ROOT / "config" / "inferq.toml").read_text(encoding="utf-8")
    tenants_at, deployments_at = example.index("[[tenants]]"), example.index("[[deployments]]")
    path = tmp_path / "inferq.toml"
    path.write_text(example[:tenants_at] + keys + "\n" + example[deployments_at:] + "\n" + issuer)
    config = load_config(path)
    demo = config.tenant("demo")
    assert [k.key_id for k in demo.api_keys] == ["8d969eef", "ci-2026"]
    assert demo.api_keys[1].expires is not None
    (trusted,) = config.auth.issuers
    assert trusted.metadata_url and trusted.claim == "oid" and set(trusted.tenants.values()) == {"demo"}
    assert trusted.admins


def test_the_readme_token_client_example_is_python() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", SECTION, re.S)
    compile(code, "README.md", "exec")
