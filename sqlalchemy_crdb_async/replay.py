async def retrying_session(*a, **k): raise NotImplementedError
