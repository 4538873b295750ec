export * from './influxql.js';
export * from './line-protocol.js';
export * from './storage.js';
export * from './transport.js';
export * from './write-errors.js';
