"""Bootstrap of the first admin, from the command line."""

from __future__ import annotations

from inferx.audit.service import record
from inferx.auth.passwords import Passwords
from inferx.config import Settings
from inferx.db import create_engine, create_sessionmaker, unit_of_work
from inferx.tables import User
from inferx.users import repository


async def create_or_promote_admin(settings: Settings, email: str, password: str) -> bool:
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        concurrency=1,
    )
    engine = create_engine(settings.db_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            user = await repository.get_by_email(session, email)
            created = user is None
            if user is None:
                user = User(email=email, password_hash=await passwords.hash(password), role="admin")
                session.add(user)
            else:
                user.role = "admin"
                user.password_hash = await passwords.hash(password)
            await session.flush()
            await record(session, "user.admin_bootstrapped", target_id=user.id, source="cli")
            return created
    finally:
        await engine.dispose()
