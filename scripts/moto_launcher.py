"""Starts a moto server for the project's tests and local runs.

    .venv/bin/python scripts/moto_launcher.py [--host 127.0.0.1] [--port 0]
        [--lambda-endpoint-port N] [--execute-state-machines] [--no-stdin-watch]

* `--port 0` (the default) binds a free port. When the server answers, the
  launcher prints exactly one line, `READY http://HOST:PORT`, on stdout.
* The launcher exits when its standard input reaches end of file (so a test
  process that dies takes the server with it), and on SIGTERM / SIGINT.
  `--no-stdin-watch` keeps it running until it is signalled.
* `--lambda-endpoint-port N` sets MOTO_PORT=N. Moto's Step Functions
  interpreter invokes Lambda functions at http://localhost:$MOTO_PORT; the
  project runs a local endpoint there that serves
  `POST /2015-03-31/functions/{name}/invocations` with the real handlers and
  forwards everything else to this server. Moto reads MOTO_PORT when it makes
  the call (`moto.settings.moto_server_port()`), so setting it before start is
  enough.
* `--execute-state-machines` makes Step Functions really execute ASL (the
  same as POSTing {"stepfunctions": {"execute_state_machine": true}} to
  /moto-api/config).

It also patches, at run time, a moto bug the suite runs into (see
`patch_sync_task_callback`); it never edits the installed package.
"""

import argparse
import inspect
import logging
import os
import signal
import sys
import textwrap
import threading


def patch_sync_task_callback() -> None:
    """Guards `callback_endpoint.interrupt_all()` in moto's Step Functions
    interpreter.

    In moto 5.2.x, `StateTaskServiceCallback._eval_integration_pattern` calls
    `callback_endpoint.interrupt_all()` in a `finally:` although the endpoint
    is only created for integrations that support `waitForTaskToken`. Every
    `.sync` task without it (for example `glue:startJobRun.sync`) then fails
    with `States.Runtime: 'NoneType' object has no attribute 'interrupt_all'`.
    The fix is the one-line guard `if callback_endpoint is not None:`.

    The method's source is rewritten with that guard and recompiled in its
    module. If the expected line is missing (a moto upgrade changed or fixed
    it), this fails loudly rather than running unpatched.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as module,
    )

    cls = module.StateTaskServiceCallback
    method = cls._eval_integration_pattern
    source = textwrap.dedent(inspect.getsource(method))
    lines = source.splitlines()
    hits = [i for i, line in enumerate(lines) if line.strip() == "callback_endpoint.interrupt_all()"]
    if len(hits) != 1:
        raise SystemExit(
            "moto_launcher: expected one `callback_endpoint.interrupt_all()` in "
            f"{module.__file__}; found {len(hits)}. Review patch_sync_task_callback for this moto version."
        )
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i : i + 1] = [
        f"{indent}if callback_endpoint is not None:",
        f"{indent}    callback_endpoint.interrupt_all()",
    ]
    namespace: dict = {}
    exec(compile("\n".join(lines) + "\n", module.__file__, "exec"), module.__dict__, namespace)
    cls._eval_integration_pattern = namespace["_eval_integration_pattern"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lambda-endpoint-port", type=int)
    parser.add_argument("--execute-state-machines", action="store_true")
    parser.add_argument("--no-stdin-watch", action="store_true")
    args = parser.parse_args()

    if args.lambda_endpoint_port:
        os.environ["MOTO_PORT"] = str(args.lambda_endpoint_port)
    # Request logs would drown the caller's output; errors still reach stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    patch_sync_task_callback()

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    if not args.lambda_endpoint_port:
        os.environ.setdefault("MOTO_PORT", str(port))

    if args.execute_state_machines:
        import json
        import urllib.request

        request = urllib.request.Request(
            f"http://{host}:{port}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()

    print(f"READY http://{host}:{port}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if not args.no_stdin_watch:

        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            done.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
