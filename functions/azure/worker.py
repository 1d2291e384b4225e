"""Queue-triggered functions: run a job, fail a poisoned one; timers: publish usage kept for later, send job
messages a dead process left unsent."""

from __future__ import annotations

import azure.functions as func

from shared.bindings import JOB_QUEUE, POISON_QUEUE, STORAGE_CONNECTION
from shared.bootstrap import get_app

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("run_job")
@bp.queue_trigger(arg_name="msg", queue_name=JOB_QUEUE, connection=STORAGE_CONNECTION)
def run_job(msg: func.QueueMessage) -> None:
    # Returns: done (the host deletes the message). Raises: transient, the host redelivers, then poisons.
    get_app().worker.process(msg.get_body(), msg.dequeue_count or 1)


@bp.function_name("fail_poisoned_job")
@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection=STORAGE_CONNECTION)
def fail_poisoned_job(msg: func.QueueMessage) -> None:
    get_app().worker.fail_poisoned(msg.get_body())


@bp.function_name("publish_pending_usage")
@bp.timer_trigger(arg_name="timer", schedule="0 */1 * * * *", run_on_startup=False)
def publish_pending_usage(timer: func.TimerRequest) -> None:  # noqa: ARG001 (the binding needs the argument)
    app = get_app()
    app.worker.publish_pending_usage()
    app.worker.flush_outcomes()  # the per-deployment figures of an instance that went quiet


@bp.function_name("resend_unsent_jobs")
@bp.timer_trigger(arg_name="timer", schedule="30 */1 * * * *", run_on_startup=False)
def resend_unsent_jobs(timer: func.TimerRequest) -> None:  # noqa: ARG001 (the binding needs the argument)
    get_app().dispatcher.resend_unsent()
