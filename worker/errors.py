"""Errors the worker raises. Poison records never raise: they become dead letters.

Every error that ends the process carries the exit code the ``riskstream`` command returns, so an
operator (or Kubernetes' restart policy and alerting) can tell a bad password from a missing topic
without reading the log:

====  ================================================================================
code  meaning
====  ================================================================================
0     stopped cleanly (drained and committed)
1     a pipeline stage failed (see the log)
2     invalid settings, or the model cannot be served
3     fenced: another instance owns this worker's id or transactional id
4     Kafka authentication or authorization failed (user and mechanism named)
5     TLS: the brokers' certificates could not be verified
6     a topic is missing or does not fit (named in the message)
7     an input record batch cannot be decoded and ``consumer.undecodable_batch`` is ``stop``
8     no broker could be reached at start-up within ``kafka.startup_timeout_s``
130   a second signal: exited at once without committing
====  ================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FENCED = 3
EXIT_AUTHENTICATION = 4
EXIT_TLS = 5
EXIT_TOPICS = 6
EXIT_UNDECODABLE = 7
EXIT_UNREACHABLE = 8
EXIT_ABORTED = 130


class WorkerError(Exception):
    """Root of every error the worker raises; ``exit_code`` is what the process exits with."""

    exit_code = EXIT_CONFIG


class ConfigError(WorkerError):
    """Settings are invalid; the message is one line an operator can act on."""


class FencedError(WorkerError):
    """Another instance took over this worker's transactional id or group membership."""

    exit_code = EXIT_FENCED


class ModelUnavailableError(WorkerError):
    """The model directory is missing or cannot be loaded."""


class StartupCheckError(WorkerError):
    """A start-up check against the cluster failed; the message names what and how to fix it."""


class AuthenticationError(StartupCheckError):
    exit_code = EXIT_AUTHENTICATION


class TlsVerificationError(StartupCheckError):
    exit_code = EXIT_TLS


class TopicError(StartupCheckError):
    exit_code = EXIT_TOPICS


class BrokerUnreachableError(StartupCheckError):
    exit_code = EXIT_UNREACHABLE


class UndecodableInputError(WorkerError):
    """An input record batch cannot be decoded and the settings say to stop rather than skip it."""

    exit_code = EXIT_UNDECODABLE
