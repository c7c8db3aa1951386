"""Local stand-ins for the third-party providers messaging talks to, so a laptop and the tests run the
whole sending path for real:

- an SMTP server (aiosmtpd) that keeps every mail it receives;
- an SMS endpoint speaking Aliyun's Dysmsapi RPC protocol (`SendSms`, `SendBatchSms`, version
  2017-05-25): it checks the request signature (HMAC-SHA1, signature version 1.0) against the access keys
  it was given, answers with Aliyun's response shape and error codes, and keeps what it accepted;
  `QuerySendDetails` looks sends up, and reports (SmsReport) are pushed to a callback when one is set;
- the same for Tencent Cloud SMS (API 3.0, TC3-HMAC-SHA256): `SendSms`, the lookup
  `PullSmsSendStatusByPhoneNumber`, and status callbacks (回执) in Tencent's shape.

Both are visible over HTTP (`GET /_local/sms`, `GET /_local/mail`) for the console and the tests.
Failures can be injected (`POST /_local/sms/faults`) to exercise retries and timeouts.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hmac
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

from laoke.kit.vendors import aliyun_signature, tencent_tc3_authorization

LOCAL_TENCENT_SECRET_ID = "AKID-local-laoke"  # noqa: S105 - an id, published for the stand-in
LOCAL_TENCENT_SECRET_KEY = "local-laoke-tencent-key"  # noqa: S105 - the local stand-in's published key
LOCAL_ACCESS_KEY_ID = "LTAI-local-laoke"
LOCAL_ACCESS_KEY_SECRET = "local-laoke-sms-secret"  # noqa: S105 - the local stand-in's published key
_CHINA = ZoneInfo("Asia/Shanghai")  # Aliyun writes its times in China time
MAX_BATCH = 100  # SendBatchSms takes at most 100 numbers per call
# Carriers report seconds after a send. A report can still overtake messaging recording the vendor's
# answer (messaging keeps it until then); `SmsFaults.report_before_answer` makes that happen every time.
REPORT_DELAY_SECONDS = 1.0
_MOBILE = re.compile(r"^(\+?86)?1[3-9]\d{9}$")  # what both vendors accept


@dataclass
class SmsFaults:
    """Injected failures: the next `errors` calls answer `code`; the next `timeouts` calls hang."""

    errors: int = 0
    code: str = "isv.BUSINESS_LIMIT_CONTROL"
    timeouts: int = 0
    hang_seconds: float = 30.0
    undeliverable: list[str] = field(default_factory=list)  # accepted, then reported failed
    # Push the delivery reports before answering the send call: they reach messaging while it still
    # waits for the answer that names the vendor's message ids.
    report_before_answer: bool = False


@dataclass
class LocalProviders:
    keys: dict[str, str] = field(default_factory=lambda: {LOCAL_ACCESS_KEY_ID: LOCAL_ACCESS_KEY_SECRET})
    tencent_keys: dict[str, str] = field(
        default_factory=lambda: {LOCAL_TENCENT_SECRET_ID: LOCAL_TENCENT_SECRET_KEY}
    )
    sms: list[dict[str, Any]] = field(default_factory=list)
    mail: list[dict[str, Any]] = field(default_factory=list)
    faults: SmsFaults = field(default_factory=SmsFaults)
    calls: int = 0
    # Where delivery reports (SmsReport) and replies (SmsUp) are pushed, as Aliyun's HTTP batch push does.
    callback_url: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep_mail(self, record: dict[str, Any]) -> None:
        with self._lock:  # the SMTP server runs in its own thread
            self.mail.append(record)


def _pull_send_status(
    state: LocalProviders, body: str, request_id: str, error: Callable[[str, str], JSONResponse]
) -> JSONResponse:
    """Tencent `PullSmsSendStatusByPhoneNumber`: the status of each SMS sent to one number in a time
    range (every SMS here is delivered the moment it is received)."""
    try:
        call = json.loads(body)
        phone = str(call["PhoneNumber"]).removeprefix("+86")
        begin, offset, limit = int(call["BeginTime"]), int(call["Offset"]), int(call["Limit"])
        end = int(call.get("EndTime") or datetime.now(UTC).timestamp())
    except (ValueError, KeyError, TypeError):
        return error("InvalidParameter", "PhoneNumber, BeginTime, Offset and Limit are required")
    if not 0 < limit <= 100:
        return error("InvalidParameterValue.LimitExceeded", "Limit is 1 to 100")
    found = [
        s
        for s in state.sms
        if s["provider"] == "tencent"
        and s["phone"] == phone
        and begin <= datetime.fromisoformat(s["received_at"]).timestamp() <= end
    ]
    statuses = [
        {
            "UserReceiveTime": int(datetime.fromisoformat(s["received_at"]).timestamp()),
            "CountryCode": "86",
            "SubscriberNumber": phone,
            "PhoneNumber": f"+86{phone}",
            "SerialNo": s["biz_id"],
            "ReportStatus": "SUCCESS",
            "Description": "DELIVRD",
            "SessionContext": s.get("out_id") or "",
        }
        for s in found[offset : offset + limit]
    ]
    return JSONResponse({"Response": {"PullSmsSendStatusSet": statuses, "RequestId": request_id}})


def _query_send_details(state: LocalProviders, params: dict[str, str]) -> JSONResponse:
    """What was sent to one number on one day (China time), newest first, a page at a time."""
    phone, day = params.get("PhoneNumber", ""), params.get("SendDate", "")
    if not phone or len(day) != 8:
        return _aliyun_error("isv.INVALID_PARAMETERS", "PhoneNumber and SendDate (yyyyMMdd) are required")
    size, page = int(params.get("PageSize", "10")), int(params.get("CurrentPage", "1"))
    found = [
        s
        for s in reversed(state.sms)
        if s["provider"] == "aliyun"  # what this vendor sent, not the Tencent endpoint beside it
        and s["phone"] == phone
        and datetime.fromisoformat(s["received_at"]).astimezone(_CHINA).strftime("%Y%m%d") == day
    ]
    details = [
        {
            "PhoneNum": s["phone"],
            "SendStatus": 3,
            "ErrCode": "DELIVERED",
            "TemplateCode": s["template_code"],
            "Content": json.dumps(s["params"], ensure_ascii=False),
            "SendDate": s["received_at"],
            "ReceiveDate": s["received_at"],
            "OutId": s["out_id"],
        }
        for s in found[(page - 1) * size : page * size]
    ]
    return JSONResponse(
        {
            "RequestId": str(uuid.uuid4()),
            "Code": "OK",
            "Message": "OK",
            "TotalCount": len(found),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": details},
        }
    )


def _aliyun_error(code: str, message: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"RequestId": str(uuid.uuid4()).upper(), "Code": code, "Message": message}, status_code=status
    )


def sms_app(state: LocalProviders) -> FastAPI:
    app = FastAPI(title="Local SMS endpoint (Aliyun Dysmsapi protocol)", docs_url=None, openapi_url=None)

    @app.api_route("/", methods=["GET", "POST"])
    async def dysmsapi(request: Request, background: BackgroundTasks) -> JSONResponse:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        state.calls += 1
        if state.faults.timeouts > 0:
            # The vendor never answers in time, and (like a request lost on the way in) keeps nothing.
            state.faults.timeouts -= 1
            await asyncio.sleep(state.faults.hang_seconds)
            return _aliyun_error(
                "ServiceUnavailable", "The request has failed due to a temporary failure.", 503
            )
        signature = params.pop("Signature", "")
        secret = state.keys.get(params.get("AccessKeyId", ""))
        if secret is None:
            return _aliyun_error("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        expected = aliyun_signature(request.method, params, secret)
        if not hmac.compare_digest(signature, expected):
            return _aliyun_error(
                "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
            )
        try:
            stamp = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _aliyun_error("MissingTimestamp", "Timestamp is mandatory for this action.")
        if abs(datetime.now(UTC) - stamp) > timedelta(minutes=15):
            return _aliyun_error("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        if state.faults.errors > 0:
            state.faults.errors -= 1
            return JSONResponse(
                {"RequestId": str(uuid.uuid4()), "Code": state.faults.code, "Message": "fault"}
            )
        action = params.get("Action")
        if action == "SendSms":
            numbers = params.get("PhoneNumbers", "").split(",")
            signs = [params.get("SignName", "")] * len(numbers)
            variables = [json.loads(params.get("TemplateParam") or "{}")] * len(numbers)
        elif action == "SendBatchSms":
            try:
                numbers = json.loads(params["PhoneNumberJson"])
                signs = json.loads(params["SignNameJson"])
                variables = json.loads(params.get("TemplateParamJson") or "[]") or [{}] * len(numbers)
            except (KeyError, ValueError):
                return _aliyun_error(
                    "isv.INVALID_PARAMETERS", "PhoneNumberJson/SignNameJson must be JSON arrays"
                )
            if not (len(numbers) == len(signs) == len(variables)):
                return _aliyun_error("isv.INVALID_JSON_PARAM", "array lengths differ")
        elif action == "QuerySendDetails":
            return _query_send_details(state, params)
        else:
            return _aliyun_error("InvalidAction.NotFound", f"Specified api is not found: {action}", 404)
        if not numbers or len(numbers) > MAX_BATCH:
            return _aliyun_error("isv.BUSINESS_LIMIT_CONTROL", f"1 to {MAX_BATCH} numbers per call")
        if not params.get("TemplateCode"):
            return _aliyun_error("isv.SMS_TEMPLATE_ILLEGAL", "TemplateCode is mandatory")
        bad = [n for n in numbers if not _MOBILE.match(str(n))]
        if bad:
            return JSONResponse(
                {
                    "RequestId": str(uuid.uuid4()),
                    "Code": "isv.MOBILE_NUMBER_ILLEGAL",
                    "Message": f"illegal: {bad[0]}",
                }
            )
        biz_id = f"{uuid.uuid4().int % 10**18:018d}^0"
        reports = []
        for number, sign, values in zip(numbers, signs, variables, strict=True):
            failed = str(number) in state.faults.undeliverable
            reports.append(
                {
                    "phone_number": number,
                    "send_time": datetime.now(_CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                    "report_time": datetime.now(_CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                    "success": not failed,
                    "err_code": "MOBILE_NOT_ON_SERVICE" if failed else "DELIVERED",
                    "err_msg": "用户停机" if failed else "用户接收成功",
                    "sms_size": "1",
                    "biz_id": biz_id,
                    "out_id": params.get("OutId"),
                }
            )
            state.sms.append(
                {
                    "provider": "aliyun",
                    "biz_id": biz_id,
                    "phone": number,
                    "sign_name": sign,
                    "template_code": params["TemplateCode"],
                    "params": values,
                    "out_id": params.get("OutId"),
                    "received_at": datetime.now(UTC).isoformat(),
                }
            )
        await _report(state, background, reports)
        return JSONResponse({"RequestId": str(uuid.uuid4()), "BizId": biz_id, "Code": "OK", "Message": "OK"})

    @app.post("/tencent")
    async def tencent_sms(request: Request, background: BackgroundTasks) -> JSONResponse:
        """Tencent Cloud SMS `SendSms` (API 3.0, version 2021-01-11), TC3-HMAC-SHA256 signed."""
        body = (await request.body()).decode()
        request_id = str(uuid.uuid4())
        state.calls += 1

        def error(code: str, message: str) -> JSONResponse:
            return JSONResponse(
                {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}}
            )

        authorization = request.headers.get("authorization", "")
        secret_id = authorization.partition("Credential=")[2].partition("/")[0]
        secret_key = state.tencent_keys.get(secret_id)
        if secret_key is None:
            return error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        try:
            timestamp = int(request.headers.get("x-tc-timestamp", ""))
        except ValueError:
            return error("MissingParameter", "X-TC-Timestamp is required.")
        if abs(datetime.now(UTC).timestamp() - timestamp) > 300:
            return error("AuthFailure.SignatureExpire", "Signature expired.")
        expected = tencent_tc3_authorization(
            secret_id=secret_id,
            secret_key=secret_key,
            service="sms",
            host=request.headers.get("host", ""),
            body=body,
            timestamp=timestamp,
        )
        if not hmac.compare_digest(authorization, expected):
            return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        action = request.headers.get("x-tc-action")
        if action == "PullSmsSendStatusByPhoneNumber":
            return _pull_send_status(state, body, request_id, error)
        if action != "SendSms":
            return error("InvalidAction", f"unknown action {action}")
        if state.faults.errors > 0:
            state.faults.errors -= 1
            return error("InternalError.RequestTimeException", "fault")
        try:
            call = json.loads(body)
            numbers = list(call["PhoneNumberSet"])
            params = list(call.get("TemplateParamSet") or [])
            app_id, template_id = str(call["SmsSdkAppId"]), str(call["TemplateId"])
        except (ValueError, KeyError, TypeError):
            return error("InvalidParameter", "PhoneNumberSet, SmsSdkAppId and TemplateId are required")
        if not numbers or len(numbers) > 200:
            return error("LimitExceeded.PhoneNumberCountLimit", "1 to 200 numbers per call")
        statuses = []
        reports: list[dict[str, Any]] = []  # what Tencent's status callback (回执) pushes
        for number in numbers:
            if not _MOBILE.match(str(number)):
                statuses.append(
                    {
                        "SerialNo": "",
                        "PhoneNumber": number,
                        "Fee": 0,
                        "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                        "Message": "incorrect phone number",
                        "IsoCode": "CN",
                    }
                )
                continue
            serial = f"{uuid.uuid4().int % 10**20:020d}"
            failed = str(number).removeprefix("+86") in state.faults.undeliverable
            reports.append(
                {
                    "user_receive_time": datetime.now(_CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                    "nationcode": "86",
                    "mobile": str(number).removeprefix("+86"),
                    "report_status": "FAIL" if failed else "SUCCESS",
                    "errmsg": "MK:0001" if failed else "DELIVRD",
                    "description": "用户停机" if failed else "用户短信送达成功",
                    "sid": serial,
                }
            )
            statuses.append(
                {
                    "SerialNo": serial,
                    "PhoneNumber": number,
                    "Fee": 1,
                    "SessionContext": call.get("SessionContext", ""),
                    "Code": "Ok",
                    "Message": "send success",
                    "IsoCode": "CN",
                }
            )
            state.sms.append(
                {
                    "provider": "tencent",
                    "biz_id": serial,
                    "phone": str(number).removeprefix("+86"),
                    "sign_name": call.get("SignName", ""),
                    "template_code": template_id,
                    "app_id": app_id,
                    "params": params,
                    "out_id": call.get("SessionContext"),
                    "received_at": datetime.now(UTC).isoformat(),
                }
            )
        await _report(state, background, reports)
        return JSONResponse({"Response": {"SendStatusSet": statuses, "RequestId": request_id}})

    @app.post("/_local/sms/callback")
    async def set_callback(body: dict[str, Any]) -> dict[str, Any]:
        """Where to push reports and replies (in Aliyun's console: 消息接收 HTTP 批量推送)."""
        state.callback_url = body.get("url")
        return {"ok": True}

    @app.post("/_local/sms/reply")
    async def reply(body: dict[str, Any]) -> dict[str, Any]:
        """A buyer texts back (e.g. "TD"): pushed as an SmsUp message."""
        if not state.callback_url:
            return {"ok": False, "detail": "no callback URL set"}
        up = {
            "phone_number": body["phone"],
            "send_time": datetime.now(_CHINA).strftime("%Y-%m-%d %H:%M:%S"),
            "content": body["content"],
            "sign_name": body.get("sign_name", ""),
            "dest_code": "1234",
            "sequence_id": uuid.uuid4().int % 10**9,
        }
        return {"ok": True, "answer": await _push(state.callback_url, [up])}

    @app.get("/_local/sms")
    async def received_sms() -> list[dict[str, Any]]:
        return state.sms

    @app.get("/_local/mail")
    async def received_mail() -> list[dict[str, Any]]:
        return state.mail

    @app.post("/_local/sms/faults")
    async def inject(body: dict[str, Any]) -> dict[str, Any]:
        state.faults = SmsFaults(**body)
        return {"ok": True}

    @app.delete("/_local")
    async def clear() -> dict[str, Any]:
        state.sms.clear()
        state.mail.clear()
        state.calls = 0
        state.faults = SmsFaults()
        state.callback_url = None
        return {"ok": True}

    return app


async def _report(state: LocalProviders, background: BackgroundTasks, reports: list[dict[str, Any]]) -> None:
    """Push delivery reports to the callback: a second after the answer, or before it (a fault)."""
    if not state.callback_url or not reports:
        return
    if state.faults.report_before_answer:
        await _push(state.callback_url, reports)
    else:
        background.add_task(_push, state.callback_url, reports, REPORT_DELAY_SECONDS)


async def _push(url: str, items: list[dict[str, Any]], delay: float = 0.0) -> Any:
    await asyncio.sleep(delay)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(url, json=items)
        return response.json() if response.content else None


class _KeepMail:
    def __init__(self, state: LocalProviders) -> None:
        self.state = state

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        self.state.keep_mail(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "subject": str(parsed["subject"] or ""),
                "headers": {k: str(v) for k, v in parsed.items()},
                "text": body.get_content() if body is not None else "",
                "received_at": datetime.now(UTC).isoformat(),
            }
        )
        return "250 Message accepted for delivery"


def start_smtp(state: LocalProviders, host: str, port: int) -> Controller:
    """An SMTP server in its own thread (aiosmtpd's Controller); stop it with `.stop()`."""
    controller = Controller(_KeepMail(state), hostname=host, port=port)
    controller.start()
    return controller
