"""`--mcp`: the predict-only demo's /predict as an MCP tool (listed with its description and input, and called with
an inline image), on 127.0.0.1. Needs the optional extra (pip install 'logoapp[mcp]')."""
from __future__ import annotations

import asyncio
import base64

import pytest

from app_server import app_server
from conftest import make_image


@pytest.mark.slow
def test_mcp_lists_and_calls_predict(trained, tmp_path):
    pytest.importorskip("mcp", reason="the optional MCP extra is not installed (pip install 'logoapp[mcp]')")
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    from logoapp.predict import Predictor
    from logoapp.ui.rest import answer
    folder, _ = trained
    img = tmp_path / "a.png"
    make_image(3, 2, 40).save(img)
    url = "data:image/png;base64," + base64.b64encode(img.read_bytes()).decode()

    async def session(base: str):
        async with sse_client(base + "gradio_api/mcp/sse") as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            tools = (await s.list_tools()).tools
            called = await s.call_tool("predict", {"image": url}) if any(t.name == "predict" for t in tools) else None
            return tools, called

    with app_server("--demo", str(folder), env={"LOGOAPP_MCP": "1"}) as server:
        tools, called = asyncio.run(asyncio.wait_for(session(server.url), 90))
    assert [t.name for t in tools] == ["predict"], [t.name for t in tools]
    tool = tools[0]
    assert tool.description.startswith("Classify one image") and "unknown" in tool.description
    assert list(tool.inputSchema["properties"]) == ["image"] and tool.inputSchema["required"] == ["image"]
    want = answer(Predictor.load(folder), str(img))
    assert not called.isError, called
    text = called.content[0].text
    assert f"'label': '{want['label']}'" in text and f"'unknown': {want['unknown']}" in text, text


def test_mcp_flag_refuses_a_login(monkeypatch):
    import logoapp.ui.server as ui
    monkeypatch.setenv("LOGOAPP_AUTH", "ada:lovelace")
    monkeypatch.setattr(ui, "build_app", lambda *a, **k: pytest.fail("built an app"))
    with pytest.raises(SystemExit) as e:
        ui.main(["--mcp"])
    assert "--mcp" in str(e.value) and "login" in str(e.value)
