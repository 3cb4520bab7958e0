// The overview in Chromium, from navigation to its numbers drawn (scripts/bench-console).
import { chromium } from 'playwright-core';

const [url, token, runs] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});
const context = await browser.newContext();
const page = await context.newPage();
await page.goto(`${url}/console/`);
await page.fill('#token', token);
await page.click('#login button[type=submit]');
await page.waitForSelector('#nav:not([hidden])');
await page.waitForSelector('svg.chart');
console.log('overview page in Chromium, navigation to charts drawn (seconds):');
for (let i = 0; i < Number(runs); i++) {
  // A fresh page each time (same session): everything from the first byte.
  const fresh = await context.newPage();
  const t0 = Date.now();
  await fresh.goto(`${url}/console/#/?now=2023-06-30T00:00:00Z`);
  await fresh.waitForSelector('svg.chart >> nth=1');
  console.log(`  ${((Date.now() - t0) / 1000).toFixed(3)}`);
  await fresh.close();
}
await browser.close();
