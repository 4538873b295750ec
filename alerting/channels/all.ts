// Every channel kind: one line each. A new kind is one file in this folder (see channel.ts) plus its line here.
import './webhook.js';
import './wecom.js';
import './dingtalk.js';
import './feishu.js';
import './email.js';
