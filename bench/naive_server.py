"""The baseline the serving benchmark compares against: the wrapper web-framework tutorials show.

One model call per request, stdlib json, the blocking call in a thread pool (what FastAPI does for a
sync `def` endpoint and threaded Flask does per request). Same URL and JSON as TF Serving's
`:predict` so the same load generator drives it. Run: python -m bench.naive_server BASE_PATH PORT
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(base_path: str, port: int) -> None:
    import tensorflow as tf
    from aiohttp import web

    version = max(int(p.name) for p in Path(base_path).iterdir() if p.name.isdigit())
    model = tf.saved_model.load(str(Path(base_path) / str(version)))
    predict = model.signatures["serving_default"]

    def run(images: list[bytes]) -> dict:
        out = predict(image_bytes=tf.constant(images))
        return {"predictions": [{"probabilities": out["probabilities"][i].numpy().tolist(),
                                 "class_id": int(out["class_id"][i]), "label": out["label"][i].numpy().decode()}
                                for i in range(len(images))]}

    async def handle(request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        images = [base64.b64decode(item["b64"]) for item in doc["instances"]]
        result = await asyncio.get_running_loop().run_in_executor(None, run, images)
        return web.Response(text=json.dumps(result), content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/models/{name}:predict", handle)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
