import { type Browser, chromium, type Page } from 'playwright-core';

/** Debian's Chromium (deploy/install-deps.sh installs it), driven headless by playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';

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
 * A console page logged in with `token` (the link the quickstart prints: `/console/#token=…`), on `route`,
 * collecting script errors and CSP violations in `problems` (refused requests, 403/404, are the page's to show).
 */
export async function openConsole(
  browser: Browser,
  url: string,
  token: string,
  route = 'overview',
): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[34]/.test(m.text())) problems.push(m.text());
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
