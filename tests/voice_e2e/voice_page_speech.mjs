// Drives /demo/voice in headless Chromium whose fake microphone plays a WAV of synthesized
// speech: connect, press "Start talking", wait until the interim transcript shows the words,
// press "Stop talking", then wait for the agent's reply. Prints one JSON line with what the
// page showed. Usage: node voice_page_speech.mjs <server url> <wav file>
import { chromium } from "playwright-core";

const [serverUrl, wavPath] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${wavPath}`,
  ],
});
const result = {};
const wait = { timeout: 30000 };
try {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(`${serverUrl}/demo/voice`);
  await page.click("#connect");
  await page.waitForFunction(() => !document.getElementById("talk").disabled, null, wait);
  result.voiceIn = await page.textContent("#voice-in");
  result.voiceOut = await page.textContent("#voice-out");
  await page.waitForSelector(".ai:not(.interim)", wait);
  await page.click("#talk");
  await page.waitForFunction(
    () => [...document.querySelectorAll(".user")].some((el) => /order/i.test(el.textContent)),
    null, wait);
  await page.click("#talk");
  await page.waitForFunction(
    () => document.querySelectorAll(".ai:not(.interim)").length >= 2
      && document.querySelector(".user:not(.interim)") !== null, null, wait);
  result.transcript = await page.$$eval("#transcript > div", (els) => els.map((el) => el.textContent));
  result.pageErrors = pageErrors;
} catch (error) {
  result.error = String(error);
  try {
    result.transcript = await (await browser.contexts()[0].pages()[0]).$$eval(
      "#transcript > div", (els) => els.map((el) => el.textContent));
  } catch {}
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
