/**
 * Shares and rounding of the figures (api/README.md#definitions, rounding): unrounded figures are compared with
 * the thresholds; what is output or quoted in a reason is rounded, half away from zero.
 */

/** Decimals of each kind of output figure (api/README.md#definitions, rounding). */
export const DIGITS = {
  /** Percentages and shares: availability, busy, faulty, used days, 校校通/班班通 rates. */
  pct: 2,
  /** 生机比 / 师机比. */
  ratio: 2,
  /** Per-class bandwidth. */
  mbps: 2,
  /** Powered-on and in-use hours. */
  hours: 2,
  /** 班班通 use: class periods per teaching week. */
  periodsPerWeek: 1,
} as const;

/**
 * The one rounding of every figure the API outputs: to `digits` decimals, half away from zero. A value less
 * than 1e-12 (relative) below a half counts as the half: that is the float error of a division or of a decimal
 * shift (1.005 × 100 = 100.49999999999999); ratios of the counts here (≤ 10^6) that are not a half differ from
 * it by far more. Figures are compared with thresholds before rounding; only what is shown is rounded.
 */
export function roundHalfAway(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  const y = Math.abs(x) * f;
  const whole = Math.floor(y);
  const r = y - whole >= 0.5 - 1e-12 * Math.max(1, y) ? whole + 1 : whole;
  return (Math.sign(x) * r) / f || 0; // never -0
}

/** a ÷ b in per cent, unrounded; null without a denominator. */
export const share = (a: number, b: number): number | null => (b > 0 ? (100 * a) / b : null);
/** An output figure: rounded as `roundHalfAway`; null stays null (not known). */
export const rounded = (x: number | null, digits: number): number | null =>
  x === null ? null : roundHalfAway(x, digits);

/**
 * A figure in a reason's message: rounded as in the output, with more decimals while the rounded figure would
 * equal the threshold it failed (so a message never says "99 % is below 99 %").
 */
export function shown(x: number, digits: number, limit: number): string {
  let d = digits;
  let v = roundHalfAway(x, d);
  while (v === limit && x !== limit && d < digits + 6) v = roundHalfAway(x, ++d);
  return String(v);
}
