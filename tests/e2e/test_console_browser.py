"""The console in a real browser (Debian's Chromium, headless, driven by Playwright): a new shop owner
signs in, imports a history file and watches it finish, opens the RFM grid, builds a segment of
sleeping customers, creates a template and runs a win-back campaign to its results, edits a tier (a bad
value first), and signs out. Every page is saved as a screenshot under tests/artifacts/ for review."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HEADER = (
    "order_id,channel,buyer_id,buyer_nick,email,mobile,status,currency,total_amount,paid_amount,"
    "refunded_amount,placed_at,paid_at,shipped_at,completed_at,item_count,title,coupon_codes,"
    "receiver_name,receiver_phone,province,city,district,address,zip"
)


def history_csv(path: Path) -> Path:
    """Twelve buyers: eight last bought 120 days ago (sleeping), four last week (active), and one
    broken row (a negative amount) that the import reports and skips."""
    now = datetime.now(UTC)
    rows = [HEADER]
    for n in range(12):
        placed = now - timedelta(days=120 if n < 8 else 7)
        at = placed.isoformat(timespec="seconds")
        rows.append(
            f"H-{n},taobao,tb_hist_{n},老客{n},,1380000{n:04d},completed,CNY,{100 + n}.00,{100 + n}.00,0,"
            f"{at},{at},{at},{at},1,明前龙井,,收件人{n},1380000{n:04d},浙江省,杭州市,西湖区,文三路{n}号,310000"
        )
    at = now.isoformat(timespec="seconds")
    rows.append(f"H-bad,taobao,tb_bad,坏行,,,completed,CNY,-5.00,-5.00,0,{at},{at},{at},{at},1,x,,,,,,,,")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert HAVE_CHROMIUM, "Chromium is missing: `make test` installs it (apt-get install chromium)"
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


async def test_a_shop_owner_imports_history_and_wins_back_sleeping_customers(
    browser: Browser, stack: ServerSet, shop: ShopClient, tmp_path: Path
) -> None:
    context = await browser.new_context(base_url=stack.gateway_url, viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))

    # Sign in (a wrong key first).
    await page.goto("/console")
    await expect(page).to_have_url(f"{stack.gateway_url}/console/login")
    await page.fill("#api-key", "lk_wrong_key")
    await page.click("#sign-in")
    await expect(page.locator("#login-error")).to_be_visible()
    await shot(page, "login")
    await page.fill("#api-key", shop.api_key)
    await page.click("#sign-in")
    await expect(page.locator("#customers-total")).to_have_text("0")

    # Import a history file and watch it finish; the broken row is listed with its download.
    await page.goto("/console/imports")
    await page.set_input_files("#import-file", str(history_csv(tmp_path / "history.csv")))
    await page.click("#upload")
    await expect(page.locator("#import-state")).to_have_attribute("data-state", "completed", timeout=30_000)
    await expect(page.locator("#import-state")).to_have_text("已完成")
    await expect(page.locator("#import-imported")).to_have_text("12")
    await expect(page.locator("#import-failed")).to_have_text("1")
    await expect(page.locator("#import-errors")).to_be_visible()
    await expect(page.locator("main")).to_contain_text("第 14 行: total_amount: negative amount")
    await expect(page.locator("main")).to_contain_text("通用 CSV")
    await shot(page, "import")

    # The overview and the RFM grid count them once segmentation has absorbed the import.
    await page.goto("/console")
    for _ in range(60):
        if await page.locator("#customers-total").inner_text() == "12":
            break
        await page.wait_for_timeout(500)
        await page.reload()
    await expect(page.locator("#customers-total")).to_have_text("12")
    await expect(page.locator("#growth")).to_be_visible()  # the charts arrive after the page
    await page.wait_for_timeout(300)  # and draw
    await shot(page, "overview")
    await page.goto("/console/rfm")
    await expect(page.locator("#rfm-grid")).to_be_visible()
    await shot(page, "rfm")
    await page.locator("#rfm-grid a").first.click()  # one click from a cell to the segment builder
    await expect(page.locator("#segment-name")).to_have_value("R5 F1")

    # Build the segment of sleeping customers, with its live size.
    await page.goto("/console/segments/new")
    await page.fill("#segment-name", "沉睡老客")
    await page.select_option("#field-0", "lifecycle")
    await page.select_option("#op-0", "eq")
    await page.fill("#value-0", "sleeping")
    await expect(page.locator("#preview-size b")).to_have_text("8")
    await shot(page, "segment-builder")
    await page.click("#create-segment")
    await expect(page.locator("#segment-size")).to_have_text("8")
    await page.wait_for_timeout(300)
    await shot(page, "segment")

    # The owner wants it out now, whatever the hour the suite runs at: quiet hours switched off in the
    # settings (inside them a campaign waits, shown on its page as held back).
    await page.goto("/console/settings")
    await page.fill("input[name=quiet_start]", "")
    await page.fill("input[name=quiet_end]", "")
    await page.click("form[action='/console/settings/policy'] button")
    await expect(page.locator("input[name=quiet_start]")).to_have_value("")
    await page.goto("/console/segments")
    await page.get_by_role("link", name="沉睡老客").click()

    # A win-back campaign to it: a template made on the spot, previewed, then launched.
    await page.click("#segment-campaign")
    await page.fill("#template-name", "唤醒老客")
    await page.select_option("#template-channel", "inapp")
    await page.fill("#template-body", "{{ name }}，好久不见！回来看看新茶吧。")
    await page.click("#create-template")
    await expect(page.locator("#preview-body")).to_contain_text("好久不见")
    await page.fill("#campaign-name", "沉睡唤醒")
    await page.select_option("#campaign-channel", "inapp")
    await page.fill("#campaign-holdout", "0")
    await shot(page, "campaign-new")
    await page.click("#create-campaign")
    await expect(page.locator("#campaign-state")).to_have_text("草稿")
    await page.click("#launch")
    await expect(page.locator("#campaign-state")).to_have_attribute("data-state", "completed", timeout=30_000)
    await expect(page.locator("#campaign-state")).to_have_text("已完成")
    await expect(page.locator("#r-sent")).to_have_text("8")
    await page.wait_for_timeout(300)
    await shot(page, "campaign")

    # Edit the tiers: a higher tier with a bigger discount is refused next to the table, then fixed.
    await page.goto("/console/loyalty")
    await page.fill("#tier-name-0", "普通会员")
    await page.fill("#tier-discount-0", "98")
    await page.fill("#tier-name-1", "金卡")
    await page.fill("#tier-spend-1", "1000")
    await page.fill("#tier-discount-1", "100")
    await page.fill("input[name=tier_level_0]", "1")
    await page.fill("input[name=tier_level_1]", "2")
    await page.click("#save-programme")
    await expect(page.locator('[data-field="tiers"]')).to_contain_text("等级越高，折扣越大")
    await shot(page, "loyalty-error")
    await page.fill("#tier-discount-1", "95")
    # Points that expire a year after they are earned: typing the days chooses that mode.
    await page.fill("#expiry-days", "365")
    await expect(page.locator("input[name=expiry_mode][value=rolling]")).to_be_checked()
    await page.click("#save-programme")
    await expect(page.locator("#programme-saved")).to_be_visible()
    program = (await shop.client.get("/api/v1/loyalty/program", headers=shop.headers())).json()
    assert program["expiry"]["mode"] == "rolling" and program["expiry"]["days"] == 365
    # A 满减 coupon made with the form.
    await page.locator("details:has(#create-coupon_templates) > summary").click()
    await page.fill("#create-coupon_templates input[name=name]", "老客满100减10")
    await page.select_option("#create-coupon_templates select[name=kind]", "spend_save")
    await page.fill("#create-coupon_templates input[name=threshold]", "100")
    await page.fill("#create-coupon_templates input[name=amount]", "10")
    await page.click("#create-coupon_templates button")
    await expect(page.locator("#coupon-templates table").filter(has_text="老客满100减10")).to_have_count(1)
    await shot(page, "loyalty")

    # An activity made with the form: choosing its type shows that type's boxes only.
    await page.goto("/console/activities")
    await expect(page.locator("#activity-type")).to_be_visible()  # open while the shop has none
    await page.select_option("#activity-type", "survey")
    await expect(page.locator("#create-activity-form textarea[name=questions]")).to_be_visible()
    await expect(page.locator("#create-activity-form input[name=slots]")).to_be_hidden()
    await page.fill("#create-activity-form input[name=title]", "肤质小调查")
    await page.fill("#create-activity-form textarea[name=questions]", "您的肤质？ = 干 / 油 / 混合")
    await page.check("#create-activity-form input[name=go_live]")
    await page.click("#create-activity")
    await expect(page.locator("#activity-rules")).to_contain_text("干 / 油 / 混合")
    await expect(page.locator("h1")).to_contain_text("问卷 · 进行中")
    await shot(page, "activity")

    # The other pages render too (screenshots for review), in English as well.
    for name in ("customers", "activities", "automations", "settings", "inbox", "segments", "campaigns"):
        await page.goto(f"/console/{name}")
        await shot(page, name)
    await page.goto("/console/customers")
    await page.locator("#customer-list a[href^='/console/customers/']").first.click()
    await expect(page.locator("#profile-form")).to_be_visible()
    # The API's values read as words of the page's language, not as the API spells them.
    await expect(page.locator("#consent")).to_contain_text("短信 ✓")
    await expect(page.locator("main")).to_contain_text("交易成功")
    await expect(page.locator("main a[href^='/console/campaigns/cmp_']")).to_have_text(
        "营销活动"
    )  # the message's
    await shot(page, "customer")
    await page.click("#lang")
    await expect(page.locator("#sign-out")).to_have_text("Sign out")
    await expect(page.locator("#consent")).to_contain_text("sms ✓")
    await shot(page, "customer-english")

    await page.click("#sign-out")
    await expect(page).to_have_url(f"{stack.gateway_url}/console/login")
    assert failures == [], failures
    await context.close()
