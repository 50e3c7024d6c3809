// The browser check behind scripts/e2e: a fresh Home Assistant is onboarded, the NES meter
// integration is added through the UI in headless Chromium, and screenshots are saved of
// the config flow, the device page and the Energy configuration picking the meter's sensor.
//
// Usage: node e2e/ui.mjs <home-assistant-url> <meter-url> <key> <screenshot-folder>

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, meterUrl, key, shots] = process.argv.slice(2);
const clientId = `${base}/`;
const user = { name: "E2E", username: "e2e", password: "nes-meter-e2e-check", language: "en" };
rmSync(shots, { recursive: true, force: true }); // no stale screenshots from an earlier run
mkdirSync(shots, { recursive: true });

async function api(path, body, token, form = false) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  headers["Content-Type"] = form ? "application/x-www-form-urlencoded" : "application/json";
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers,
    body: form ? new URLSearchParams(body).toString() : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

// Onboarding through the same API the onboarding pages call.
async function onboard() {
  const { auth_code: code } = await api("/api/onboarding/users", { client_id: clientId, ...user });
  const tokens = await api("/auth/token", { grant_type: "authorization_code", code, client_id: clientId }, null, true);
  await api("/api/onboarding/core_config", {}, tokens.access_token);
  await api("/api/onboarding/analytics", {}, tokens.access_token);
  await api("/api/onboarding/integration", { client_id: clientId, redirect_uri: `${base}/?auth_callback=1` }, tokens.access_token);
  return tokens;
}

async function shot(page, name) {
  await page.waitForTimeout(800); // let animations settle
  await page.screenshot({ path: join(shots, `${name}.png`) });
  console.log(`screenshot ${name}.png`);
}

async function logIn(page) {
  await page.goto(base);
  const username = page.getByRole("textbox", { name: /username/i });
  await username.waitFor({ timeout: 60_000 });
  await page.waitForTimeout(1000); // the login form re-renders once after loading
  await username.fill(user.username);
  await page.getByRole("textbox", { name: /password/i }).fill(user.password);
  await page.getByRole("button", { name: /log in/i }).click();
  await page.waitForURL((url) => !url.pathname.startsWith("/auth/"), { timeout: 60_000 });
  await page.getByText("Settings").first().waitFor({ timeout: 60_000 });
}

async function addIntegration(page) {
  await page.goto(`${base}/config/integrations/dashboard`);
  await page.getByText(/add integration/i).last().click();
  await page.getByText("Select brand").waitFor();
  await page.waitForTimeout(500);
  await page.keyboard.type("NES Meter"); // the brand search has the focus
  await page.getByText("NES Meter", { exact: true }).last().click();
  // HA's dialogs live in shadow roots: page-wide locators pierce them, role "dialog" does not.
  await page.getByText("Connect your NES meter").waitFor({ timeout: 60_000 });
  await shot(page, "01-config-flow");
  await page.getByRole("combobox", { name: /serial port/i }).click();
  await page.keyboard.press("Control+A"); // the form preselects the first port found
  await page.keyboard.type(meterUrl, { delay: 10 });
  await page.getByText("Connect your NES meter").click(); // leave the field: keeps the typed value
  await page.getByRole("textbox", { name: /meter key/i }).fill(key);
  await shot(page, "02-config-flow-filled");
  await page.getByRole("button", { name: /submit/i }).click();
  await page.getByText(/created configuration|success/i).first().waitFor({ timeout: 60_000 });
  await shot(page, "03-config-flow-done");
  await page.getByRole("button", { name: /finish/i }).click();
}

async function devicePage(page) {
  await page.goto(`${base}/config/devices/dashboard`);
  await page.getByText("NES 83334").first().click();
  await page.getByText(/energy import/i).first().waitFor({ timeout: 30_000 });
  await shot(page, "04-device-page");
}

async function energyConfig(page) {
  await page.goto(`${base}/config/energy`);
  await page.getByRole("button", { name: /add consumption/i }).click();
  const picker = page.getByRole("combobox").first();
  await picker.click();
  await picker.fill("NES");
  await page.getByRole("option", { name: /energy import/i }).first().waitFor({ timeout: 30_000 });
  await shot(page, "05-energy-picker");
  await page.getByRole("option", { name: /energy import/i }).first().click();
  await page.getByRole("button", { name: /save/i }).click();
  await page.getByText(/energy import/i).first().waitFor({ timeout: 30_000 });
  await shot(page, "06-energy-configured");
}

await onboard();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
let step = "log in";
try {
  await logIn(page);
  step = "add the integration";
  await addIntegration(page);
  step = "device page";
  await devicePage(page);
  step = "energy configuration";
  await energyConfig(page);
  console.log("e2e: all steps passed");
} catch (error) {
  await page.screenshot({ path: join(shots, "failure.png") });
  console.error(`e2e: failed at "${step}": ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
