"""Pipeline stages: pure logic over a `Completer`; no disk, env or clock reads of their own."""
