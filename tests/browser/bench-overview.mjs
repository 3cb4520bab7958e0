// The overview in Chromium, from navigation to its charts drawn (scripts/bench-console).
//
// The page's own clock decides: a MutationObserver notes when both charts are in the
// document, and the next animation frame after that is when they are on screen;
// both are read from performance.now(), whose zero is the navigation's start. The
// time Playwright takes to notice (it polls) is printed beside it, not counted.
import { chromium } from 'playwright-core';

const [url, token, runs] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});
const context = await browser.newContext();
await context.addInitScript(() => {
  new MutationObserver((_, observer) => {
    if (document.querySelectorAll('svg.chart').length >= 2) {
      observer.disconnect();
      window.__chartsInDom = performance.now();
      requestAnimationFrame(() => {
        window.__chartsPainted = performance.now();
      });
    }
  }).observe(document, { childList: true, subtree: true });
});
const page = await context.newPage();
await page.goto(`${url}/console/`);
await page.fill('#token', token);
await page.click('#login button[type=submit]');
await page.waitForSelector('#nav:not([hidden])');
await page.waitForSelector('svg.chart');
console.log('overview page in Chromium, navigation start to both charts painted (seconds; the question\'s request, then what Playwright saw):');
for (let i = 0; i < Number(runs); i++) {
  // A fresh page each time (same session): everything from the first byte.
  const fresh = await context.newPage();
  const t0 = Date.now();
  await fresh.goto(`${url}/console/#/?now=2023-06-30T00:00:00Z`);
  await fresh.waitForFunction(() => window.__chartsPainted !== undefined);
  const seen = (Date.now() - t0) / 1000;
  const [painted, asked, answered] = await fresh.evaluate(() => {
    const q = performance.getEntriesByType('resource').find((e) => e.name.includes('/v1/stats'));
    return [window.__chartsPainted, q.startTime, q.responseEnd];
  });
  const s = (ms) => (ms / 1000).toFixed(3);
  console.log(`  ${s(painted)}   (question ${s(asked)}–${s(answered)}; seen by Playwright at ${seen.toFixed(3)})`);
  await fresh.close();
}
await browser.close();
