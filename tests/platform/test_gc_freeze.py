"""Start-up objects are frozen out of the collector's full passes while the app runs."""

from __future__ import annotations

import gc

from asgi_lifespan import LifespanManager

from inferx.app import create_app


async def test_the_app_freezes_what_start_up_built_and_thaws_it_on_shutdown(make_settings):
    gc.unfreeze()
    app = create_app(make_settings(inference_eager_start=False))
    async with LifespanManager(app):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the imports, the app and its context
        gc.collect()
        assert gc.get_freeze_count() == frozen  # a full collection leaves them be
    assert gc.get_freeze_count() == 0
