"""In-memory adapters of the persistence ports: the fakes the use cases are unit-tested on.

One module per noun, like ``adapters.db``; ``unit_of_work.FakeUnitOfWork`` carries them. They
are faithful where the services depend on the database's answers: a unique key or foreign key
broken (InvariantError, where the database raises), version and status guards (InvariantError
as in ``adapters.db``), conflicts skipped (``ON CONFLICT DO NOTHING``) and row counts returned.
"""
