"""The serving entry point, built on KServe's own argument parser and ModelServer.

Every `kserve.model_server` flag works (`--http_port`, `--grpc_port`, `--workers`,
`--enable_grpc`, `--predictor_host`, ...); ours are added on top. What runs depends on the
arguments:

- `--model_dir DIR` alone: the predictor (cluster predictor container, or local without Feast);
- `--feast_repo DIR` with `--predictor_host HOST`: the transformer (cluster transformer
  container), forwarding V1 instances to the predictor;
- both `--model_dir` and `--feast_repo`: transformer and predictor in one process (local).

Run as `hm3 serve ...` or `python -m components.serving.server ...`. Note that
`kserve.model_server` reads `sys.argv` when imported, so the server must be started in its own
process with these arguments on its command line (which both entry points do).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from components.serving.protocol import ServingConfig
from model.devices import check_device_name

log = logging.getLogger(__name__)

ANY_HOST = "0.0.0.0"  # noqa: S104 - the container default; local runs pass --bind_host
_DEFAULTS = ServingConfig()
# A refused (413) body is read and discarded up to this many bytes before the answer, so that a
# client which sends its whole body before reading gets the 413 instead of a reset connection.
MAX_DRAIN_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ServeOptions:
    """What to serve, resolved from the command line.

    Attributes:
        config: Endpoint name and request limits.
        model_dir: Model artifact to load in this process, if any.
        feast_repo: Feast repo for the transformer, if any.
        feature_service: Feast FeatureService the model was trained on.
        exported_program: Serve the artifact's torch.export program.
        device: Where the predictor's network runs (`cpu`, `cuda`, `cuda:N`, `auto`).
        bind_host: Interface the HTTP server listens on.
        predictor_host: Where a standalone transformer forwards to.
        predictor_protocol: Protocol the transformer speaks to the predictor.
    """

    config: ServingConfig
    model_dir: str | None
    feast_repo: str | None
    feature_service: str
    exported_program: bool
    bind_host: str
    predictor_host: str | None
    predictor_protocol: str
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.model_dir and not self.feast_repo:
            raise ValueError("give --model_dir (predictor), --feast_repo (transformer), or both")
        if self.model_dir and self.predictor_host:
            raise ValueError(
                f"--predictor_host {self.predictor_host!r} is for a standalone transformer; "
                "with --model_dir the predictor runs in this process"
            )
        if self.feast_repo and not self.model_dir and not self.predictor_host:
            raise ValueError("--feast_repo without --model_dir needs --predictor_host")
        if self.feast_repo and not self.model_dir and self.predictor_protocol != "v1":
            raise ValueError(
                "--predictor_protocol must be v1 for the transformer, "
                f"got {self.predictor_protocol!r}"
            )
        try:
            check_device_name(self.device)
        except ValueError as err:
            raise ValueError(f"--{err}") from err

    @property
    def role(self) -> str:
        """`predictor`, `transformer`, or `transformer+predictor` (one process)."""
        if self.model_dir and self.feast_repo:
            return "transformer+predictor"
        return "predictor" if self.model_dir else "transformer"


def build_parser() -> argparse.ArgumentParser:
    """KServe's model server parser plus the HM^3 flags (hyphen and underscore spellings)."""
    from kserve.model_server import parser as kserve_parser
    from kserve.utils.utils import strtobool

    parser = argparse.ArgumentParser(
        prog="hm3 serve",
        parents=[kserve_parser],
        # No prefix matching: a flag that drifted in a manifest must fail, not half-match.
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Serve an HM^3 model artifact on KServe's model server (V1 and V2 protocols). With "
            "--feast-repo, features the request does not carry are fetched from the Feast "
            "online store; without it, they take the model's documented defaults (flagged in "
            "the response). All KServe model server flags are accepted."
        ),
    )
    parser.set_defaults(model_name=_DEFAULTS.model_name)
    parser.add_argument(
        "--model",
        "--model_dir",
        "--model-dir",
        dest="model_dir",
        default=None,
        help="Model artifact folder (local path, file:// or gs://); KServe passes "
        "--model_dir=/mnt/models after its storage initializer ran.",
    )
    parser.add_argument(
        "--feast-repo",
        "--feast_repo",
        dest="feast_repo",
        default=None,
        help="Feast repo folder (feature_store.yaml), applied and materialized.",
    )
    parser.add_argument(
        "--http-port",
        dest="http_port",
        type=int,
        default=argparse.SUPPRESS,
        help="Alias of --http_port.",
    )
    parser.add_argument(
        "--feature-service",
        "--feature_service",
        dest="feature_service",
        default="hm3_v1",
        help="Feast FeatureService the model was trained on.",
    )
    parser.add_argument(
        "--max-batch-size",
        "--max_batch_size",
        dest="max_batch_size",
        type=int,
        default=_DEFAULTS.max_batch_size,
        help="Most instances per request (more: HTTP 400).",
    )
    parser.add_argument(
        "--max-body-bytes",
        "--max_body_bytes",
        dest="max_body_bytes",
        type=int,
        default=_DEFAULTS.max_body_bytes,
        help="Largest request body (more: HTTP 413).",
    )
    parser.add_argument(
        "--bind-host",
        "--bind_host",
        dest="bind_host",
        default=ANY_HOST,
        help="Interface to listen on; 127.0.0.1 for a local endpoint (needs --workers 1 and "
        "--enable_grpc false, as KServe's gRPC server always binds every interface).",
    )
    parser.add_argument(
        "--torch-threads",
        "--torch_threads",
        dest="torch_threads",
        type=int,
        default=1,
        help="torch intra-op threads per process: requests are small and concurrent, so one "
        "thread each avoids oversubscription (scale with replicas or --workers instead).",
    )
    parser.add_argument(
        "--exported-program",
        "--exported_program",
        dest="exported_program",
        type=strtobool,
        default=False,
        help="Run the artifact's torch.export program (model.pt2) instead of rebuilding the "
        "network from config.json + model.safetensors.",
    )
    parser.add_argument(
        "--device",
        dest="device",
        default="cpu",
        help="Where the predictor runs the network: cpu, cuda, cuda:N or auto (cuda if "
        "present). Batch-1 requests are fastest on CPU; a GPU pays off for large batches "
        "(see manifests/gpu/predictor-gpu.patch.yaml).",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, ServeOptions]:
    """Parse a serve command line (KServe flags included) and resolve what to serve.

    Raises:
        SystemExit: With a usage message naming the flag, on any invalid argument (argparse).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = ServeOptions(
            config=ServingConfig(
                model_name=args.model_name,
                max_batch_size=args.max_batch_size,
                max_body_bytes=args.max_body_bytes,
            ),
            model_dir=args.model_dir,
            feast_repo=args.feast_repo,
            feature_service=args.feature_service,
            exported_program=bool(args.exported_program),
            bind_host=args.bind_host,
            predictor_host=args.predictor_host,
            predictor_protocol=args.predictor_protocol,
            device=args.device,
        )
        if args.torch_threads < 1:
            raise ValueError(f"--torch_threads must be >= 1, got {args.torch_threads}")
        if args.bind_host != ANY_HOST and (args.workers != 1 or args.enable_grpc):
            raise ValueError(
                f"--bind_host {args.bind_host} needs --workers 1 and --enable_grpc false"
            )
    except ValueError as err:
        parser.error(str(err))
    return args, options


def build_model(options: ServeOptions) -> Any:
    """The kserve.Model to register: predictor, transformer, or transformer with predictor."""
    from components.serving.predictor import HM3Predictor
    from components.serving.transformer import FeastTransformer

    predictor = None
    if options.model_dir:
        predictor = HM3Predictor(
            options.model_dir,
            options.config,
            exported=options.exported_program,
            device=options.device,
        )
    if not options.feast_repo:
        return predictor
    return FeastTransformer(
        options.feast_repo, options.config, service=options.feature_service, predictor=predictor
    )


class BodyLimitMiddleware:
    """ASGI middleware answering 413 to request bodies over a byte limit, before parsing.

    Content-Length is checked first; chunked bodies are counted while read, then replayed to
    the app, so a client cannot make the server buffer more than the limit. A refused body is
    read and discarded (up to `max_drain_bytes`) before the 413 goes out: a client that sends
    its whole body before reading the answer (Python's urllib, http.client) would otherwise
    have the connection closed under it and see a reset instead of the 413.
    """

    def __init__(self, app: Any, max_bytes: int, max_drain_bytes: int = MAX_DRAIN_BYTES) -> None:
        """Wrap `app`, refusing bodies over `max_bytes`; discard up to `max_drain_bytes`."""
        self.app = app
        self.max_bytes = max_bytes
        self.max_drain_bytes = max_drain_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _json_error(send, 400, f"Content-Length header {declared!r:.40} is invalid")
                return
            if int(declared) > self.max_bytes:
                await self._refuse(receive, send, int(declared), read=0, more=True)
                return
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            more = message.get("more_body", False)
            if total > self.max_bytes:
                await self._refuse(receive, send, None, read=total, more=more)
                return
            chunks.append(chunk)
            if not more:
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(
        self, receive: Any, send: Any, declared: int | None, read: int, more: bool
    ) -> None:
        """Discard the rest of a refused body (up to the drain bound), then answer 413.

        Args:
            receive: The ASGI receive channel.
            send: The ASGI send channel.
            declared: The Content-Length, or None for a chunked body.
            read: Bytes of the body already received.
            more: Whether more of the body is still to come.
        """
        while more and read <= self.max_drain_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            read += len(message.get("body", b""))
            more = message.get("more_body", False)
        # Past the bound the rest is not read: the server closes the connection after the
        # answer, and a client still sending may see a reset (the bound keeps a refused
        # upload from tying up the server).
        await _json_error(send, 413, self._too_large(declared if declared is not None else read))

    def _too_large(self, size: int) -> str:
        return (
            f"request body of {size} bytes exceeds max_body_bytes {self.max_bytes}; split the batch"
        )


async def _json_error(send: Any, status: int, message: str) -> None:
    import orjson

    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _server_class() -> type:
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import ModelServer
    from kserve.protocol.rest.server import RESTServer

    class HM3ModelServer(ModelServer):
        """KServe's ModelServer with a configurable HTTP bind address."""

        def __init__(self, bind_host: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.bind_host = bind_host

        def start(self, models: list) -> None:
            if self.bind_host == ANY_HOST:
                super().start(models)
                return
            # KServe's RESTServer always binds 0.0.0.0; a local endpoint must stay on loopback.
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = RESTServer(
                FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                access_log_format=self.access_log_format,
                workers=1,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
            )
            self._rest_server.config.host = self.bind_host
            self.servers.append(self._rest_server.start())
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

    return HM3ModelServer


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, load the model(s) and serve until SIGTERM/SIGINT."""
    args, options = parse_args(argv)
    from kserve.model_server import app
    from kserve.predictor_config import PredictorConfig

    if options.model_dir:
        import torch

        torch.set_num_threads(args.torch_threads)
    model = build_model(options)
    model.load()
    app.add_middleware(BodyLimitMiddleware, max_bytes=options.config.max_body_bytes)
    log.info(
        "serving %s as %s on %s:%d",
        options.config.model_name,
        options.role,
        options.bind_host,
        args.http_port,
    )
    server = _server_class()(
        bind_host=options.bind_host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
        predictor_config=PredictorConfig(
            predictor_host=args.predictor_host,
            predictor_protocol=args.predictor_protocol,
            predictor_use_ssl=args.predictor_use_ssl,
            predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
            predictor_request_retries=args.predictor_request_retries,
            predictor_health_check=args.enable_predictor_health_check,
        ),
    )
    server.start([model])


if __name__ == "__main__":
    main()
