import type { FastifyInstance } from 'fastify';
import { type Assistant, getAssistant, searchAssistants } from '../../assistants/repository.ts';
import { HangarError } from '../../errors.ts';
import { agentJsonSchemas } from '../../sdk/agent.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith } from '../errors.ts';
import { AgentParams, AgentSearchBody, AssistantParams, AssistantSearchBody } from '../schemas.ts';

/**
 * Read-only assistants: LangGraph's `/assistants/*` and the Agent Protocol's
 * `/agents/*`, both over the `assistants` table (one default assistant per
 * configured agent until assistant CRUD lands).
 */
export function registerAssistantRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  async function findAssistant(tenantId: string, assistantId: string): Promise<Assistant> {
    const assistant = await getAssistant(deps.db, tenantId, assistantId);
    if (assistant === null) {
      throw new HangarError('not_found', `assistant ${assistantId} not found`, {
        details: { assistant_id: assistantId },
      });
    }
    return assistant;
  }

  /** The JSON Schemas of the agent behind an assistant; `agent_not_found` if this process lacks it. */
  function schemasOf(assistant: Assistant): { input: unknown; output: unknown } {
    return agentJsonSchemas(deps.registry.resolve(assistant.graph_id).agent);
  }

  app.get('/assistants/:assistant_id', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    return findAssistant(deps.tenantOf(request), assistant_id);
  });

  app.post('/assistants/search', async (request) => {
    const body = parseWith(AssistantSearchBody, request.body ?? {}, '');
    return searchAssistants(deps.db, deps.tenantOf(request), {
      limit: body.limit,
      offset: body.offset,
      ...(body.graph_id === undefined ? {} : { graphId: body.graph_id }),
      ...(body.name === undefined ? {} : { name: body.name }),
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
      ...(body.sort_by === undefined ? {} : { sortBy: body.sort_by }),
      ...(body.sort_order === undefined ? {} : { sortOrder: body.sort_order }),
    });
  });

  app.get('/assistants/:assistant_id/schemas', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    const assistant = await findAssistant(deps.tenantOf(request), assistant_id);
    const { input, output } = schemasOf(assistant);
    return {
      graph_id: assistant.graph_id,
      input_schema: input,
      output_schema: output,
      state_schema: null,
      config_schema: null,
      context_schema: null,
    };
  });

  app.post('/agents/search', async (request) => {
    const body = parseWith(AgentSearchBody, request.body ?? {}, '');
    const assistants = await searchAssistants(deps.db, deps.tenantOf(request), {
      limit: body.limit,
      offset: body.offset,
      ...(body.name === undefined ? {} : { name: body.name }),
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
    });
    return assistants.map(toAgent);
  });

  app.get('/agents/:agent_id', async (request) => {
    const { agent_id } = parseWith(AgentParams, request.params, 'path');
    return toAgent(await findAssistant(deps.tenantOf(request), agent_id));
  });

  app.get('/agents/:agent_id/schemas', async (request) => {
    const { agent_id } = parseWith(AgentParams, request.params, 'path');
    const assistant = await findAssistant(deps.tenantOf(request), agent_id);
    const { input, output } = schemasOf(assistant);
    // The spec requires `output_schema` to be an object; `{}` is the schema that accepts any output.
    return { agent_id: assistant.assistant_id, input_schema: input, output_schema: output ?? {} };
  });
}

/** An assistant as an Agent Protocol `Agent`. */
function toAgent(assistant: Assistant) {
  return {
    agent_id: assistant.assistant_id,
    name: assistant.name,
    ...(assistant.description === null ? {} : { description: assistant.description }),
    metadata: assistant.metadata,
    // Every run streams its events over SSE; agents take arbitrary input, not a `messages` list.
    capabilities: { 'ap.io.messages': false, 'ap.io.streaming': true },
  };
}
