"""What the desk says in groups, in one place."""

ASK_PLACE = "请问具体位置在哪里？可以直接回复楼号、单元或门口（如“3号楼2单元门口”），也可以发一个微信位置。"
ACK = "已收到，工单号 #{id}，已转交【{service}】{grid}。\n问题：{title}{place}\n处理好后会在群里通知您。"
ACK_URGENT = "\n情况紧急，已同时提醒网格员尽快处理；如有人员危险请立即拨打 119/120/110。"
MERGED = "已有居民反映，已合并到工单 #{id}，处理后会通知大家。（目前共 {n} 位居民反映）"
CLOSED = "工单 #{id}（{title}）已处理完毕{notes}。感谢反映！"
REOPENED = "工单 #{id}（{title}）已重新打开，正在处理中{notes}。"
ALERT_PARKED = "【工单发送失败】工单 #{id}（{title}）多次发送到工单系统都没有成功，已暂存，会继续重试。最近的错误：{error}"
ALERT_URGENT = "【紧急工单 #{id}】{group}：{title}（{who}反映）{place}"
ALERT_SOURCE = "\n来源：{source}"
# what staff read as a message's source (tickets and alerts say which channel a report came from)
CHANNEL_NAMES = {
    "wechaty": "微信群",
    "simulator": "模拟群",
    "console": "控制台",
    "wecom_bot": "企业微信",
    "wecom_kf": "微信客服",
}
STATUS_OPEN = "处理中"
STATUS_CLOSED = "已处理完毕"
NOT_FOUND = "没有找到工单 #{id}，请核对工单号。"
LOOKUP = "工单 #{id}（{title}）：{status}{agency}{notes}\n服务类别：{service}；反映人数：{n}{sync}"
SYNC_PENDING = "\n（工单系统暂时连不上，已在本地登记，恢复后会自动提交）"
SYNC_PARKED = "\n（工单提交多次未成功，已通知工作人员跟进）"
NONE_OF_MINE = "您还没有反映过问题。遇到问题直接在群里说，比如“3号楼门口井盖松了”，我会登记工单。"
MINE_HEAD = "您反映过的工单（最近{n}个）："
MINE_LINE = "#{id} {title}：{status}"
