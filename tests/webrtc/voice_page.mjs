// Drives /demo/voice in headless Chromium with a fake microphone (a WAV file) and prints one
// JSON line with what the page showed. Usage: node voice_page.mjs <server url> <wav file>
import { chromium } from "playwright-core";

const [serverUrl, wavPath] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${wavPath}`,
  ],
});
const result = {};
try {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(`${serverUrl}/demo/voice`);
  await page.click("#connect");
  await page.waitForFunction(
    () => document.getElementById("control-state").textContent === "open", null, { timeout: 20000 });
  await page.waitForFunction(
    () => document.getElementById("auth-state").textContent !== "-", null, { timeout: 20000 });
  result.control = await page.textContent("#control-state");
  result.auth = await page.textContent("#auth-state");
  await page.waitForFunction(() => !document.getElementById("text").disabled, null, { timeout: 20000 });
  await page.waitForSelector(".ai:not(.interim)", { timeout: 20000 });
  result.greeting = await page.textContent(".ai");
  await page.fill("#text", "where is my package?");
  await page.click("#send");
  await page.waitForFunction(
    () => document.querySelectorAll(".ai:not(.interim)").length >= 2, null, { timeout: 20000 });
  result.transcript = await page.$$eval("#transcript > div", (els) => els.map((el) => el.textContent));
  result.pageErrors = pageErrors;
} catch (error) {
  result.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
