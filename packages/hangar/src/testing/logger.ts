import pino, { type Logger } from 'pino';

/** A logger for tests: silent unless HANGAR_TEST_LOG is set to a level. */
export function testLogger(): Logger {
  return pino({ level: process.env.HANGAR_TEST_LOG ?? 'silent' });
}
