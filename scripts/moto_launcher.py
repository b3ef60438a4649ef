"""Starts a moto server for the project's tests and local runs.

    .venv/bin/python scripts/moto_launcher.py [--host 127.0.0.1] [--port 0]
        [--lambda-endpoint-port N] [--execute-state-machines] [--no-stdin-watch]

* `--port 0` (the default) lets the server bind a free port and reads it back.
  When the server answers, the launcher prints exactly one line,
  `READY http://HOST:PORT`, on stdout; nothing else is ever written there
  (file descriptor 1 is pointed at stderr before moto is imported).
* The launcher exits when its standard input reaches end of file (so a test
  process that dies takes the server with it), and on SIGTERM / SIGINT.
  `--no-stdin-watch` keeps it running until it is signalled (for humans).
* `--lambda-endpoint-port N` sets MOTO_PORT=N before moto is imported. Moto's
  Step Functions interpreter calls every service it integrates with (Lambda,
  Glue, ...) through a boto3 client at http://localhost:$MOTO_PORT; the
  project runs a local endpoint on N that serves
  `POST /2015-03-31/functions/{name}/invocations` with the real handlers and
  forwards everything else to this server. Without the flag MOTO_PORT is set
  to this server's own port (overriding any inherited value).
  Timing, as read in moto 5.2.5: MOTO_PORT is read when the call is made, not
  at import: `moto/stepfunctions/parser/asl/utils/boto_client.py` calls
  `moto.settings.moto_server_port()` (= `os.environ.get("MOTO_PORT") or
  "5000"`) each time it builds a client. Only `moto/server.py`'s argparse
  default reads it earlier, and that is not used here. It is still set
  before the import so an upgrade that caches it at import keeps working.
* `--execute-state-machines` makes Step Functions really execute ASL (the
  same as POSTing {"stepfunctions": {"execute_state_machine": true}} to
  /moto-api/config), done over HTTP once the server answers.

It also patches, at run time, five moto 5.2.5 gaps the suite runs into (see
`patch_sync_task_callback`, `patch_execution_output_dates`,
`patch_dynamodb_item_atomicity`, `patch_s3_put_ordering` and
`patch_glue_update_table_version`); it never edits the installed package.
"""

import argparse
import functools
import inspect
import json
import logging
import os
import signal
import sys
import textwrap
import threading
import urllib.request

# The one moto version this launcher's patch was written and checked against.
EXPECTED_MOTO = "5.2.5"


def patch_sync_task_callback() -> None:
    """Guards `callback_endpoint.interrupt_all()` in moto's Step Functions
    interpreter.

    In moto 5.2.5, `StateTaskServiceCallback._eval_integration_pattern`
    (moto/stepfunctions/parser/asl/component/state/exec/state_task/service/
    state_task_service_callback.py) calls `callback_endpoint.interrupt_all()`
    in a `finally:` although the endpoint is only created for integrations
    that support `waitForTaskToken`. Every `.sync` task of such an integration
    (for example `arn:aws:states:::glue:startJobRun.sync`) then fails with
    `States.Runtime: 'NoneType' object has no attribute 'interrupt_all'`,
    even when the job itself succeeded. The fix is the one-line guard
    `if callback_endpoint is not None:`.

    The method's source is rewritten with that guard and recompiled in its
    own module's namespace (it uses no zero-argument `super()`, which a
    recompiled method could not). If the expected line is missing or appears
    more than once (a moto upgrade changed or fixed it), startup fails loudly
    rather than running unpatched: review this function then.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as module,
    )

    def fail(why: str) -> None:
        raise SystemExit(
            f"moto_launcher: cannot patch {module.__file__}: {why}. "
            "Review patch_sync_task_callback in scripts/moto_launcher.py for this moto version."
        )

    cls = module.StateTaskServiceCallback
    method = cls.__dict__.get("_eval_integration_pattern")
    if method is None:
        fail("StateTaskServiceCallback._eval_integration_pattern not found")
    try:
        source = textwrap.dedent(inspect.getsource(method))
        first_line = inspect.getsourcelines(method)[1]
    except (OSError, TypeError) as err:
        fail(f"no source for _eval_integration_pattern ({err})")
    if "super()" in source:
        fail("the method now uses super(), which recompiling would break")
    lines = source.splitlines()
    target = "callback_endpoint.interrupt_all()"
    hits = [i for i, line in enumerate(lines) if line.strip() == target]
    if len(hits) != 1:
        fail(f"expected exactly one line `{target}`, found {len(hits)}")
    i = hits[0]
    if not any(line.strip() == "finally:" for line in lines[:i]):
        fail(f"`{target}` is no longer inside a `finally:`")
    if lines[i - 1].strip() == "if callback_endpoint is not None:":
        fail("the guard is already there (moto fixed the bug?); drop the patch")
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i : i + 1] = [
        f"{indent}if callback_endpoint is not None:",
        f"{indent}    {target}",
    ]
    # Keep the file name and line numbers of the original in tracebacks.
    code = compile("\n" * (first_line - 1) + "\n".join(lines) + "\n", module.__file__, "exec")
    namespace: dict = {}
    exec(code, module.__dict__, namespace)
    patched = namespace["_eval_integration_pattern"]
    patched.__qualname__ = method.__qualname__
    patched.__doc__ = method.__doc__
    patched._moto_launcher_patched = True
    cls._eval_integration_pattern = patched


def patch_execution_output_dates() -> None:
    """Makes a finished execution's output JSON-safe.

    In moto 5.2.5 the Step Functions interpreter keeps a finished execution's
    output as the Python object the last state produced. Service integrations
    put botocore's parsed responses there, with `datetime` values (a Glue
    `startJobRun.sync` result has StartedOn, CompletedOn, LastModifiedOn), and
    `DescribeExecution` (moto/stepfunctions/responses.py) then fails with HTTP
    500 `Object of type datetime is not JSON serializable` because it calls
    plain `json.dumps` on it. Moto's interpreter renders such values with its
    own `to_json_str` everywhere else (ISO 8601 strings, as in the execution
    history), so the output is normalised the same way when the execution
    ends, by wrapping `BaseExecutionWorkerCommunication._reflect_execution_status`
    (moto/stepfunctions/parser/backend/execution.py). Fails loudly when the
    wrapped method is gone.
    """
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
    from moto.stepfunctions.parser.backend import execution as module

    cls = getattr(module, "BaseExecutionWorkerCommunication", None)
    original = getattr(cls, "_reflect_execution_status", None)
    if original is None:
        raise SystemExit(
            f"moto_launcher: cannot patch {module.__file__}: "
            "BaseExecutionWorkerCommunication._reflect_execution_status not found. "
            "Review patch_execution_output_dates in scripts/moto_launcher.py for this moto version."
        )

    def _reflect_execution_status(self) -> None:
        original(self)
        output = self.execution.output
        if output is not None and not isinstance(output, str):
            self.execution.output = json.loads(to_json_str(output))

    _reflect_execution_status.__qualname__ = original.__qualname__
    cls._reflect_execution_status = _reflect_execution_status


# The DynamoDB backend methods that read or write items, each of which
# DynamoDB runs atomically per item.
DYNAMODB_ITEM_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "get_item",
    "batch_get_item",
    "query",
    "scan",
    "execute_statement",
)


def patch_dynamodb_item_atomicity() -> None:
    """Makes moto's DynamoDB item operations atomic, as DynamoDB's are.

    In moto 5.2.5, `DynamoDBBackend.update_item` (moto/dynamodb/models/
    __init__.py) reads the item, evaluates the ConditionExpression and then
    changes the item in place, with no lock, while the server answers each
    request on its own thread. Two concurrent conditional writes can then
    both pass their condition: two scheduler ticks could both claim one
    provider, which DynamoDB never allows (the suite's "claimed once" tests
    caught it under load). Every item operation of the backend is run under
    one lock (reentrant: a transaction or a batch calls the others), so each
    is atomic with respect to the others, as in DynamoDB. Fails loudly when a
    method is gone.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in DYNAMODB_ITEM_OPERATIONS:
        original = DynamoDBBackend.__dict__.get(name)
        if original is None:
            raise SystemExit(
                f"moto_launcher: cannot patch DynamoDBBackend.{name}: not found. "
                "Review patch_dynamodb_item_atomicity in scripts/moto_launcher.py "
                "for this moto version."
            )

        def locked(self, *args, _original=original, **kwargs):
            with lock:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, functools.wraps(original)(locked))


RECEIVED_AT_HEADER = "x-moto-launcher-received-at-ns"


def patch_s3_put_ordering() -> None:
    """Orders S3 PutObjects racing on one key as S3 does: latest timestamp wins.

    S3 keeps, of two PUTs to one key, the one with the latest timestamp
    (the time S3 received it), however long each takes to apply; moto 5.2.5
    keeps the last to finish. The tests' fault proxy can stamp a request
    with the time it received it (`x-moto-launcher-received-at-ns`, then
    hold it to play a write S3 received and applied late). A stamped PUT
    older than the last stamped PUT to its key answers 200, as S3 answers a
    superseded write, and stores nothing. Requests without the stamp (every
    test but the delayed-write ones) are untouched. Fails loudly when the
    method is gone.
    """
    import hashlib

    from moto.s3.responses import S3Response

    original = S3Response.__dict__.get("put_object")
    if original is None:
        raise SystemExit(
            "moto_launcher: cannot patch S3Response.put_object: not found. "
            "Review patch_s3_put_ordering in scripts/moto_launcher.py for this moto version."
        )
    latest: dict = {}
    lock = threading.Lock()

    def put_object(self):
        stamp = self.headers.get(RECEIVED_AT_HEADER)
        if stamp is None or self.headers.get("x-amz-copy-source"):
            return original(self)
        key = (self.bucket_name, self.parse_key_name())
        with lock:
            if int(stamp) < latest.get(key, -1):
                etag = hashlib.md5(self.body or b"").hexdigest()
                return 200, {"ETag": f'"{etag}"'}, b""
            latest[key] = int(stamp)
            return original(self)

    S3Response.put_object = functools.wraps(original)(put_object)


def patch_glue_update_table_version() -> None:
    """Makes Glue `UpdateTable` honour `VersionId`, as Glue does.

    An Iceberg commit through the Glue catalog moves the table's
    `metadata_location` with `UpdateTable`, sending the `VersionId` it read;
    Glue answers `ConcurrentModificationException` when the table changed
    since, and the loser retries on the new metadata. Moto 5.2.5's
    `GlueResponse.update_table` (moto/glue/responses.py) drops `VersionId`,
    so of two racing commits the first is silently lost. Here an
    `UpdateTable` whose `VersionId` is not the table's current version fails
    as Glue's does, and the check and the update are one atomic step. Fails
    loudly when the method is gone.
    """
    from moto.glue.exceptions import GlueClientError
    from moto.glue.responses import GlueResponse

    original = GlueResponse.__dict__.get("update_table")
    if original is None:
        raise SystemExit(
            "moto_launcher: cannot patch GlueResponse.update_table: not found. "
            "Review patch_glue_update_table_version in scripts/moto_launcher.py "
            "for this moto version."
        )

    class ConcurrentModificationException(GlueClientError):
        def __init__(self, msg: str):
            super().__init__("ConcurrentModificationException", msg)

    lock = threading.Lock()

    def update_table(self):
        version = self.parameters.get("VersionId")
        with lock:
            if version is not None:
                database = self.parameters.get("DatabaseName")
                name = (self.parameters.get("TableInput") or {}).get("Name")
                table = self.glue_backend.get_table(database, name)
                current = str(table._current_version)
                if str(version) != current:
                    raise ConcurrentModificationException(
                        f"Table {database}.{name} is at version {current}, not {version}"
                    )
            return original(self)

    GlueResponse.update_table = functools.wraps(original)(update_table)


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM / SIGINT handler."""


def _on_signal(signum, frame):  # noqa: ARG001
    raise _Stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    parser.add_argument(
        "--lambda-endpoint-port",
        type=int,
        help="port of the local endpoint moto's Step Functions calls Lambda (and all else) through",
    )
    parser.add_argument("--execute-state-machines", action="store_true")
    parser.add_argument(
        "--no-stdin-watch", action="store_true", help="do not exit when standard input reaches EOF"
    )
    args = parser.parse_args()

    # Stdout carries the READY line and nothing else: keep a private handle on
    # it and point file descriptor 1 at stderr, so that any print() or
    # subprocess output from moto lands on stderr, and a parent that stops
    # reading stdout after READY can never block or break the server.
    ready_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    if args.lambda_endpoint_port:
        # Before moto is imported: see the module docstring on timing.
        os.environ["MOTO_PORT"] = str(args.lambda_endpoint_port)

    # Werkzeug logs each request at INFO to stderr; keep errors only.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    import moto
    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    if moto.__version__ != EXPECTED_MOTO:
        print(
            f"moto_launcher: warning: moto {moto.__version__}, written for {EXPECTED_MOTO}",
            file=sys.stderr,
        )
    patch_sync_task_callback()
    patch_execution_output_dates()
    patch_dynamodb_item_atomicity()
    patch_s3_put_ordering()
    patch_glue_update_table_version()

    # The same server moto.server.ThreadedMotoServer builds (it does accept
    # port 0), but made here in the main thread: when the bind fails, werkzeug
    # prints "Address already in use ..." and calls sys.exit(1), which inside
    # ThreadedMotoServer's thread only ends that thread, so its start() waits
    # forever. Here the launcher exits with status 2 instead.
    try:
        server = make_server(
            args.host,
            args.port,
            DomainDispatcherApplication(create_backend_app),
            threaded=True,
            request_handler=MotoRequestHandler,
        )
    except (OSError, SystemExit) as err:
        print(f"moto_launcher: cannot listen on {args.host}:{args.port} ({err})", file=sys.stderr)
        sys.exit(2)
    host, port = server.server_address[:2]
    if not args.lambda_endpoint_port:
        os.environ["MOTO_PORT"] = str(port)
    thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    thread.start()
    # A wildcard bind is reached through loopback; IPv6 literals need brackets.
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    # Talk to it directly even when the environment names an HTTP proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # Until here the default actions (terminate / KeyboardInterrupt) do.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    code = 0
    try:
        if args.execute_state_machines:
            request = urllib.request.Request(
                f"{base}/moto-api/config",
                data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with opener.open(request, timeout=30) as response:
                response.read()
            # The response body leaves "stepfunctions" out (moto 5.2.5's
            # get_config returns batch and lambda only): check in-process.
            from moto.core.config import default_user_config

            if not default_user_config.get("stepfunctions", {}).get("execute_state_machine"):
                raise RuntimeError("POST /moto-api/config did not enable Step Functions execution")
        else:
            # Proves the server answers before READY is printed.
            with opener.open(f"{base}/moto-api/config", timeout=30) as response:
                response.read()

        ready_out.write(f"READY {base}\n")
        ready_out.flush()

        stop = threading.Event()
        if not args.no_stdin_watch:

            def watch_stdin() -> None:
                try:
                    while os.read(0, 4096):
                        pass
                except OSError:
                    pass
                stop.set()

            threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
        while not stop.wait(1.0):
            pass
    except (_Stop, KeyboardInterrupt):
        pass
    except BaseException as err:  # noqa: BLE001
        print(f"moto_launcher: {type(err).__name__}: {err}", file=sys.stderr)
        code = 1
    finally:
        # Ignore further signals while closing.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.shutdown()
        server.server_close()
        sys.stderr.flush()
        # Step Functions executions and request threads may still be running;
        # they hold no state worth saving, so do not wait for them.
        os._exit(code)


if __name__ == "__main__":
    main()
