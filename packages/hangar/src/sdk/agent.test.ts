import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Agent, agentJsonSchemas, defineAgent, isAgent } from './agent.ts';

const run = async () => 'ok';

describe('defineAgent', () => {
  it('returns a frozen, branded agent that keeps the spec', () => {
    const input = z.object({ name: z.string() });
    const agent = defineAgent({ name: 'greeter', description: 'Says hello', input, run });
    expect(isAgent(agent)).toBe(true);
    expect(Object.isFrozen(agent)).toBe(true);
    expect(agent.name).toBe('greeter');
    expect(agent.description).toBe('Says hello');
    expect(agent.input).toBe(input);
    expect(agent.run).toBe(run);
  });

  it('accepts names of letters, digits, "-" and "_" up to 64 characters, starting with a letter', () => {
    for (const name of ['a', 'pr-review', 'Storefront_Audit2', `a${'b'.repeat(63)}`]) {
      expect(defineAgent({ name, input: z.object({}), run }).name).toBe(name);
    }
  });

  it.each([
    ['empty', ''],
    ['starting with a digit', '1agent'],
    ['starting with a dash', '-agent'],
    ['containing a space', 'my agent'],
    ['containing a slash', 'team/agent'],
    ['containing a dot', 'agent.v2'],
    ['longer than 64 characters', `a${'b'.repeat(64)}`],
  ])('rejects a name %s', (_, name) => {
    expect(() => defineAgent({ name, input: z.object({}), run })).toThrow(
      new TypeError(
        `agent name ${JSON.stringify(name)} is invalid: use letters, digits, "-" or "_", starting with a letter`,
      ),
    );
  });

  it('rejects a name that is not a string', () => {
    expect(() => defineAgent({ name: 42 as unknown as string, input: z.object({}), run })).toThrow(
      /agent name 42 is invalid/,
    );
  });

  it.each([
    ['a plain object', { name: 'string' }],
    ['a JSON schema', { type: 'object', properties: {} }],
    ['a zod-v3-like object without _zod', { safeParse: () => ({ success: true }) }],
    ['undefined', undefined],
  ])('rejects an input that is not a zod schema: %s', (_, input) => {
    expect(() => defineAgent({ name: 'agent', input: input as unknown as z.ZodType, run })).toThrow(
      new TypeError(`agent "agent": "input" must be a zod schema (import { z } from 'zod', zod v4)`),
    );
  });

  it('rejects a missing run function', () => {
    expect(() =>
      defineAgent({ name: 'agent', input: z.object({}), run: 'nope' as unknown as Agent['run'] }),
    ).toThrow(new TypeError('agent "agent": "run" must be a function'));
  });

  it('rejects a spec that is not an object', () => {
    expect(() => defineAgent(null as unknown as Parameters<typeof defineAgent>[0])).toThrow(
      new TypeError('defineAgent expects an object'),
    );
  });
});

describe('isAgent', () => {
  it('recognizes only values made by defineAgent', () => {
    const agent = defineAgent({ name: 'a', input: z.object({}), run });
    expect(isAgent(agent)).toBe(true);
    expect(isAgent({ ...agent })).toBe(true);
    expect(isAgent({ name: 'a', input: z.object({}), run })).toBe(false);
    expect(isAgent(null)).toBe(false);
    expect(isAgent('a')).toBe(false);
  });
});

describe('agentJsonSchemas', () => {
  it('gives the input and output schemas as JSON Schema', () => {
    const agent = defineAgent({
      name: 'greeter',
      input: z.object({ name: z.string().describe('Who to greet'), times: z.number().int().optional() }),
      output: z.object({ greeting: z.string() }),
      async run() {
        return { greeting: 'hi' };
      },
    });
    const schemas = agentJsonSchemas(agent);
    expect(schemas.input).toEqual({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      properties: {
        name: { type: 'string', description: 'Who to greet' },
        times: { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
      },
      required: ['name'],
    });
    expect(schemas.output).toEqual({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      properties: { greeting: { type: 'string' } },
      required: ['greeting'],
      additionalProperties: false,
    });
  });

  it('gives a null output schema when the agent declares none', () => {
    const agent = defineAgent({ name: 'free', input: z.string(), run });
    expect(agentJsonSchemas(agent)).toEqual({
      input: { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'string' },
      output: null,
    });
  });

  it('describes what a client may send: fields with defaults are optional, transforms show their input', () => {
    const agent = defineAgent({
      name: 'defaults',
      input: z.object({
        topic: z.string(),
        depth: z.number().default(2),
        tags: z.string().transform((s) => s.split(',')),
      }),
      run,
    });
    const input = agentJsonSchemas(agent).input as {
      required: string[];
      properties: Record<string, unknown>;
    };
    expect(input.required).toEqual(['topic', 'tags']);
    expect(input.properties.depth).toEqual({ type: 'number', default: 2 });
    expect(input.properties.tags).toEqual({ type: 'string' });
    // The schema agrees with what the agent accepts.
    expect(agent.input.safeParse({ topic: 't', tags: 'a,b' }).success).toBe(true);
  });

  it('renders types JSON Schema cannot express as "any" instead of throwing', () => {
    const agent = defineAgent({ name: 'dated', input: z.object({ when: z.date() }), run });
    const input = agentJsonSchemas(agent).input as { properties: Record<string, unknown> };
    expect(input.properties.when).toEqual({});
  });
});
