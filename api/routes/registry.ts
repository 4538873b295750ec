import ExcelJS from 'exceljs';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CredentialsFileError } from '../../common/credentials-file.js';
import { ApiError } from '../../common/http/errors.js';
import { READ_ROLES } from '../../common/http/scope.js';
import { ImportError } from '../../common/registry/import.js';
import { ImportLimitError, LIMIT_KEYS } from '../../common/registry/limits.js';
import { registryTemplate } from '../../common/registry/template.js';
import { ENTITIES, type EntityName, SHEETS } from '../../contracts/registry.js';
import { CONTENT_TYPES } from '../export.js';
import type { AppDeps } from '../http/deps.js';
import { ERROR_RESPONSES, errorSchema } from '../schemas.js';

const TEMPLATE_URL = '/v1/registry/template.xlsx';

/** Registry import (all-or-nothing), export (a workbook that imports back unchanged) and the blank template. */
export const registryRoutes: FastifyPluginAsyncZod<{ deps: AppDeps }> = async (app, { deps }) => {
  // The body of an import is the file itself, whatever its type: parsed by the importer, not by Fastify.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  // The registry is one file for the whole deployment: a token limited to a region may not read or replace it.
  // The template holds no registry data: any token may fetch it (a county fills it in for the city).
  app.addHook('preHandler', async (req) => {
    if (req.principal?.scope !== undefined && req.routeOptions.url !== TEMPLATE_URL)
      throw new ApiError(
        403,
        'CFM_API_OUT_OF_SCOPE',
        `the registry covers every region; token scope ${req.principal.scope} is too narrow (use an unscoped admin token)`,
      );
  });

  const busy = () =>
    new ApiError(
      409,
      'CFM_API_IMPORT_BUSY',
      'another registry import is running; retry when it has finished',
    );
  const counts = z.object({
    regions: z.number(),
    schools: z.number(),
    classrooms: z.number(),
    devices: z.number(),
  });
  app.post(
    '/v1/registry/import',
    {
      config: { roles: ['admin'] },
      // The only large body of the API: the file, up to `api.bodyLimitBytes`; every other route takes 64 KiB.
      bodyLimit: deps.registry.limits.maxFileBytes,
      // While an import runs, a second is refused before its body is read (and again in the handler: one may
      // have started while this body arrived).
      preParsing: async (req) => {
        if (req.principal?.scope === undefined && deps.registry.busy) throw busy();
      },
      schema: {
        summary:
          'Import one file (body = the file): .xlsx with sheets regions/schools/classrooms/devices (or 区域/学校/教室/设备), a .csv of one entity, or .yaml/.json. All-or-nothing.',
        querystring: z.object({
          filename: z
            .string()
            .regex(/\.(xlsx|csv|ya?ml|json)$/i, { message: 'must end in .xlsx, .csv, .yaml, .yml or .json' })
            .max(255)
            .describe('The file name: its extension picks the format; for a CSV its name picks the entity.'),
          entity: z
            .enum(ENTITIES)
            .optional()
            .describe('For a CSV whose name does not say which list it holds.'),
          replace: z
            .string()
            .regex(/^[a-z]+(,[a-z]+)*$/)
            .optional()
            .describe('Comma-separated lists to replace instead of update, e.g. `devices`.'),
        }),
        response: {
          200: z.object({ status: z.literal('ok'), rows: counts, totals: counts, version: z.number() }),
          409: errorSchema.describe('Another import is running.'),
          413: errorSchema.describe(
            'The file, its inflated size, or the time or memory its import needs exceeds a limit (`limit` names it).',
          ),
          422: errorSchema.describe(
            'The file has errors (`issues`, nothing changed), or more rows or cells than allowed (`limit`).',
          ),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const body = req.body as unknown;
      if (!Buffer.isBuffer(body) || body.length === 0)
        throw new ApiError(400, 'CFM_API_BAD_REQUEST', 'the request body must be the file', 'body');
      const replace = (req.query.replace?.split(',') ?? []) as EntityName[];
      const bad = replace.find((r) => !(ENTITIES as readonly string[]).includes(r));
      if (bad) throw new ApiError(400, 'CFM_API_BAD_REQUEST', `replace: unknown list ${bad}`, 'replace');
      // One import at a time, refused rather than queued: a queue of city workbooks would hold their bodies.
      if (deps.registry.busy) throw busy();
      try {
        const rows = await deps.registry.import(
          [
            {
              name: req.query.filename,
              data: body,
              ...(req.query.entity ? { entity: req.query.entity } : {}),
            },
          ],
          { replace },
        );
        const d = deps.registry.index.data;
        req.log.info({ rows, by: req.principal?.tokenId }, 'registry imported');
        return {
          status: 'ok' as const,
          rows,
          totals: {
            regions: d.regions.length,
            schools: d.schools.length,
            classrooms: d.classrooms.length,
            devices: d.devices.length,
          },
          version: deps.registry.version,
        };
      } catch (e) {
        if (e instanceof ImportError)
          throw new ApiError(
            422,
            'CFM_API_IMPORT_REJECTED',
            `import rejected, nothing changed: ${e.issues.length} error(s)`,
            undefined,
            e.issues,
          );
        if (e instanceof CredentialsFileError) {
          // A server-side problem, not the upload's: logged with the file, answered without the path.
          req.log.error({ err: e.message }, 'registry import refused: pollers credential names unreadable');
          throw new ApiError(
            503,
            'CFM_API_UNAVAILABLE',
            "import refused, nothing changed: the pollers' credential names (api.credentialNamesFile or api.pollerCredentialsFile) cannot be read; see the API's log",
          );
        }
        if (e instanceof ImportLimitError)
          throw new ApiError(
            e.status,
            e.status === 413 ? 'CFM_API_TOO_LARGE' : 'CFM_API_IMPORT_LIMIT',
            `import refused, nothing changed: ${e.message}`,
            undefined,
            undefined,
            { name: LIMIT_KEYS[e.limit], value: e.value },
          );
        throw e;
      }
    },
  );

  let template: Promise<Buffer> | undefined; // the same bytes every time: built once
  app.get(
    TEMPLATE_URL,
    {
      config: { roles: READ_ROLES },
      schema: {
        summary:
          'A workbook to fill in and import: sheets 区域/学校/教室/设备 headed with the Chinese labels the importer accepts, one example row each, and a notes sheet 说明 with every column, its meaning and the values allowed.',
        response: {
          200: z.string().describe('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (_req, reply) => {
      template ??= registryTemplate();
      return reply
        .type(CONTENT_TYPES.xlsx)
        .header(
          'content-disposition',
          // RFC 6266 §4.3: an ASCII name for old clients, the Chinese one (RFC 5987) for the rest.
          `attachment; filename="registry-template.xlsx"; filename*=UTF-8''${encodeURIComponent('设备台账模板.xlsx')}`,
        )
        .send((await template) as never);
    },
  );

  app.get(
    '/v1/registry/export',
    {
      config: { roles: ['admin'] },
      schema: {
        summary: 'The whole registry as a workbook (English keys as headers): edit it and import it back.',
        response: {
          200: z.string().describe('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (_req, reply) => {
      const wb = new ExcelJS.Workbook();
      const data = deps.registry.index.data;
      for (const e of ENTITIES) {
        const ws = wb.addWorksheet(e);
        const cols = SHEETS[e].columns;
        ws.addRow(cols.map((c) => c.key));
        for (const row of data[e] as Record<string, unknown>[])
          ws.addRow(cols.map((c) => (row[c.key] ?? null) as ExcelJS.CellValue));
      }
      return reply
        .type(CONTENT_TYPES.xlsx)
        .header('content-disposition', 'attachment; filename="registry.xlsx"')
        .send(Buffer.from(await wb.xlsx.writeBuffer()) as never);
    },
  );
};
