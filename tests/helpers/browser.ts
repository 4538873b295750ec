import { type Browser, chromium, type Page } from 'playwright-core';

/**
 * Debian's Chromium (deploy/install-deps.sh installs it), driven headless by playwright-core (no browser
 * download): what every browser test (tests/console/console.test.ts, tests/api/overview.test.ts,
 * tests/e2e/quickstart-console.test.ts) launches, with the same options for all.
 */
export const CHROMIUM = '/usr/bin/chromium';

/** As root in CI, and no network beyond loopback: no sandbox, no background calls home. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A new page that collects its problems: script errors, console errors and every Content-Security-Policy
 * violation (reported by a listener installed before the page's own script runs, which the page's CSP does not
 * apply to). `ignore`: console errors a test expects (e.g. the browser's line for a 403 the page shows).
 */
export async function openPage(
  browser: Browser,
  options: { viewport?: { width: number; height: number }; ignore?: RegExp } = {},
): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage(options.viewport ? { viewport: options.viewport } : {});
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !options.ignore?.test(m.text())) problems.push(m.text());
  });
  await page.addInitScript({
    content:
      "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));",
  });
  return { page, problems };
}

/**
 * A console page logged in with `token` (the link the quickstart prints: `/console/#token=…`), on `route`,
 * collecting script errors and CSP violations in `problems` (refused requests, 403/404, are the page's to show).
 */
export async function openConsole(
  browser: Browser,
  url: string,
  token: string,
  route = 'overview',
): Promise<{ page: Page; problems: string[] }> {
  // A county token's 403 on a page it may not read is shown by the page; the browser logs the status too.
  const { page, problems } = await openPage(browser, {
    viewport: { width: 1360, height: 900 },
    ignore: /status of 40[34]/,
  });
  await page.goto(`${url}/console/#token=${token}`);
  await page.waitForSelector('header.top');
  if (route !== 'overview') await page.goto(`${url}/console/#/${route}`);
  return { page, problems };
}

/** The text of each cell of each body row of `table` (a selector). */
export const tableCells = (page: Page, table: string): Promise<string[][]> =>
  page.$$eval(`${table} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim() ?? '')),
  );
