"""The real-services tier: PostgreSQL, Redis/RabbitMQ, gunicorn, a Celery worker and SMTP.

Turned on by ``BACKPAIN_TEST_POSTGRES_URL``, ``BACKPAIN_TEST_REDIS_URL`` and
``BACKPAIN_TEST_AMQP_URL``; ``BACKPAIN_REQUIRE_SERVICES=1`` turns a missing service into a
failure instead of a skip (DESIGN.md section 7).
"""
